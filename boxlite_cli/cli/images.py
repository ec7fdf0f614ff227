"""boxlite images: list the local images."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image, complete_image_filter
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
from boxlite_cli.errors import NotFound
from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image, rfc3339_time


def created_at(image: Image) -> float | None:
    """The config's `created` time as a timestamp, when it has a valid one."""
    return rfc3339_time(image.config.get("created"))


def short_id(image: Image, no_trunc: bool) -> str:
    return image.id if no_trunc else image.id.split(":", 1)[1][:12]


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only print image ids.")
@click.option("-a", "--all", "all_images", is_flag=True,
              help="Taken for docker's sake: there are no intermediate images to show.")
@click.option("--digests", is_flag=True, help="Show each image's digest.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate image ids.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete_image_filter,
              help="Only images that match: dangling=true|false, reference=PATTERN "
                   "(localhost/deb*, *debian:book*), label=KEY[=VALUE], before=IMAGE, "
                   "since=IMAGE.")
@template_format_option("{{.Repository}}:{{.Tag}}")
@click.argument("repository", required=False, metavar="[REPOSITORY[:TAG]]",
                shell_complete=complete_image)
@pass_cli
def images(cli: CliContext, quiet: bool, all_images: bool, digests: bool, no_trunc: bool,
           filters: tuple[str, ...], fmt: str, repository: str | None) -> int:
    """List the images in the local store (those of REPOSITORY[:TAG] only, a pattern as
    `reference=`, when given)."""
    from boxlite_cli.runtime.imagefilter import created, parse_image_filters

    wanted = parse_image_filters(filters, repository)

    def named(text: str) -> Image:
        if (image := cli.runtime.image_ops.find(text)) is None:
            raise NotFound(f"no such image: {text}", hint="see: boxlite images")
        return image

    wanted.resolve_images(named)  # (before= and since=)
    # newest first, as docker's (one image's names in name order)
    items = sorted(wanted.select(cli.runtime.images.all()), key=created, reverse=True)
    if quiet and fmt == "table":
        seen: set[str] = set()
        for image in items:
            if image.id not in seen:
                seen.add(image.id)
                click.echo(short_id(image, no_trunc))
        return 0
    # The digest the registry calls the image by (an index's, for a multi-arch one), as
    # pull prints it and inspect's RepoDigests have it.
    repo_digests = {(i.reference.name, i.manifest_digest): i.reference.digest
                    for i in cli.runtime.images.all_references() if i.reference.digest}

    def size(i: Image) -> int:  # (its files', as docker's: not the compressed download)
        return cli.runtime.images.content_size(i)

    def digest(i: Image) -> str:
        return repo_digests.get((i.reference.name, i.manifest_digest), i.manifest_digest)

    def repo_digest(i: Image) -> str:  # (the table's and templates': <none> for an image no
        return repo_digests.get((i.reference.name, i.manifest_digest), "<none>")  # registry has)

    if fmt == "json":
        print_json([{"reference": None if i.reference.unnamed else str(i.reference),
                     "repository": "<none>" if i.reference.unnamed else i.reference.name,
                     "tag": i.reference.tag, "id": i.id, "digest": digest(i),
                     "created": i.config.get("created"), "size": size(i)} for i in items])
    elif fmt != "table":
        print_lines(fmt, [{
            "Repository": Reference(i.reference.registry, i.reference.repository, None,
                                    None).short,
            "Tag": i.reference.tag or "<none>", "ID": short_id(i, no_trunc),
            "Digest": repo_digest(i), "CreatedAt": go_time(created_at(i)),
            "CreatedSince": ago(created_at(i)) or "N/A", "Size": human_size(size(i)),
        } for i in items], {"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"})
    else:
        rows = []
        for i in items:
            ref = i.reference
            repo = Reference(ref.registry, ref.repository, None, None).short
            rows.append([repo, ref.tag or "<none>", *([repo_digest(i)] if digests else []),
                         short_id(i, no_trunc), ago(created_at(i)) or "N/A", human_size(size(i))])
        print_table(["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID",
                     "CREATED", "SIZE"], rows)
    return 0
