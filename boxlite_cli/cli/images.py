"""boxlite images: list the local images."""

from __future__ import annotations

from datetime import datetime

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import (
    ago,
    go_time,
    human_size,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image


def created_at(image: Image) -> float | None:
    """The config's `created` time (RFC 3339) as a timestamp, when it has a valid one."""
    text = image.config.get("created")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only print image ids.")
@template_format_option("{{.Repository}}:{{.Tag}}")
@pass_cli
def images(cli: CliContext, quiet: bool, fmt: str) -> int:
    """List the images in the local store."""
    items = cli.runtime.images.all()
    if quiet:
        seen: set[str] = set()
        for image in items:
            if image.id not in seen:
                seen.add(image.id)
                click.echo(image.id.split(":", 1)[1][:12])
    elif fmt == "json":
        # The digest the registry calls the image by (an index's, for a multi-arch one),
        # as pull prints it and inspect's RepoDigests have it.
        repo_digests = {(i.reference.name, i.manifest_digest): i.reference.digest
                        for i in cli.runtime.images.all_references() if i.reference.digest}
        print_json([{"reference": str(i.reference), "repository": i.reference.name,
                     "tag": i.reference.tag, "id": i.id,
                     "digest": repo_digests.get((i.reference.name, i.manifest_digest),
                                                i.manifest_digest),
                     "created": i.config.get("created"), "size": i.size} for i in items])
    elif fmt != "table":
        print_lines(fmt, [{
            "Repository": Reference(i.reference.registry, i.reference.repository, None,
                                    None).short,
            "Tag": i.reference.tag or "<none>", "ID": i.id.split(":", 1)[1][:12],
            "Digest": i.manifest_digest, "CreatedAt": go_time(created_at(i)),
            "CreatedSince": ago(created_at(i)) or "N/A", "Size": human_size(i.size),
        } for i in items], {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"})
    else:
        rows = []
        for i in items:
            ref = i.reference
            repo = Reference(ref.registry, ref.repository, None, None).short
            rows.append([repo, ref.tag or "<none>", i.id.split(":", 1)[1][:12],
                         ago(created_at(i)) or "N/A", human_size(i.size)])
        print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)
    return 0
