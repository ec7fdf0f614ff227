"""The box that `run` and `create` make, from the options they share (options.py)."""

from __future__ import annotations

from typing import Any

from boxlite_cli.cli.options import memory_mib, to_network, to_process_options
from boxlite_cli.runtime.logopts import log_config
from boxlite_cli.runtime.mountflag import split_mounts
from boxlite_cli.runtime.network import parse_expose
from boxlite_cli.runtime.runtime import CreateOptions
from boxlite_cli.runtime.spec import parse_cpus, parse_disk_size, parse_labels, read_label_files
from boxlite_cli.runtime.tmpfs import parse_shm_size
from boxlite_cli.state.capabilities import normalize
from boxlite_cli.state.groupadd import check_group_add
from boxlite_cli.state.health import health_from_flags
from boxlite_cli.state.securityopt import no_new_privileges
from boxlite_cli.state.sysctls import check_sysctls
from boxlite_cli.state.ulimits import normalize_ulimits


def create_options(image: str, command: tuple[str, ...], detach: bool,
                   options: dict[str, Any]) -> CreateOptions:
    """CreateOptions of IMAGE COMMAND and the box, process and network `options`
    (click's parameters, by name); usage errors raise as they are found."""
    vcpus, cpu_limit = parse_cpus(options["cpus"])
    mount_volumes, mount_tmpfs = split_mounts(options["mounts"])
    log = log_config(options["log_driver"], options["log_opts"])
    return CreateOptions(
        image=image, name=options["name"], cpus=vcpus, cpu_limit=cpu_limit,
        memory_mib=memory_mib(options["memory"]),
        disk_size=parse_disk_size(options["disk_size"]), accel=options["accel"],
        vmm=options["vmm"], pull=options["pull"], auto_remove=options["auto_remove"],
        detach=detach,
        network=to_network(options["network"], options["dns"], options["add_hosts"],
                           options["publish"], options["dns_search"], options["dns_options"]),
        volumes=[*options["volumes"], *mount_volumes], hostname=options["hostname"],
        stop_signal=options["stop_signal"], pids_limit=options["pids_limit"],
        stop_timeout=options["stop_timeout"],
        labels=parse_labels(read_label_files(options["label_files"]) + list(options["labels"])),
        cap_add=normalize(options["cap_add"], "--cap-add"),
        cap_drop=normalize(options["cap_drop"], "--cap-drop"),
        privileged=options["privileged"], read_only=options["read_only"],
        tmpfs=[*options["tmpfs"], *mount_tmpfs], shm_size=parse_shm_size(options["shm_size"]),
        restart=options["restart"], publish_all=options["publish_all"],
        exposed=parse_expose(options["expose"]),
        log_driver=log[0], log_options=log[1],
        ulimits=normalize_ulimits(options["ulimits"]),
        no_new_privileges=no_new_privileges(options["security_opts"]),
        group_add=check_group_add(options["group_add"]),
        sysctls=check_sysctls(options["sysctls"]),
        healthcheck=health_from_flags(options["health_cmd"], options["health_interval"],
                                      options["health_timeout"], options["health_start_period"],
                                      options["health_start_interval"],
                                      options["health_retries"], options["no_healthcheck"]),
        process=to_process_options(command, options["interactive"], options["tty"],
                                   options["env"], options["env_files"], options["workdir"],
                                   options["user"], options["timeout"], options["entrypoint"]),
    )
