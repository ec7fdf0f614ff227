"""boxlite rmi and image prune: untag and delete images."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.cli.output import confirmed, human_size
from boxlite_cli.errors import BoxliteError
from boxlite_cli.runtime.images import Removal


def _print_removal(done: Removal) -> None:
    for ref in done.untagged:
        click.echo(f"Untagged: {ref}")
    for image_id in done.deleted:
        click.echo(f"Deleted: {image_id}")


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even when boxes use the image "
              "(their disks keep working) or it has several names.")
@click.argument("images", nargs=-1, required=True, shell_complete=complete_image)
@pass_cli
def rmi(cli: CliContext, force: bool, images: tuple[str, ...]) -> int:
    """Remove images by reference or id; data no image needs is deleted."""
    code = 0
    for name in images:
        try:
            _print_removal(cli.runtime.image_ops.remove([name], force))
        except BoxliteError as e:
            report(e.message, e.hint)
            code = e.exit_code
    cli.runtime.templates.drop_orphans()  # (those of the images deleted)
    return code


@click.command()
@click.option("-a", "--all", "all_unused", is_flag=True, help="Remove every image no box uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, all_unused: bool, force: bool) -> int:
    """Delete image data nothing needs: the dangling images no box uses (a tag that
    moved to a newer pull left them untagged), or with -a every image no box uses.

    Warm-start templates (and their spare VMs) are dropped too; the next cold start of
    each kind saves one."""
    question = ("Remove all images without at least one box associated to them?" if all_unused
                else "Remove unused image data?")
    if not force and not confirmed(question):
        return 0
    done = prune_images(cli, all_unused)
    _print_removal(done)
    click.echo(f"Total reclaimed space: {human_size(done.freed)}")
    return 0


def prune_images(cli: CliContext, all_unused: bool) -> Removal:
    """image prune's work (system prune's too): the images, then the warm-start templates
    (rebuilt on use) and their spare VMs."""
    done = cli.runtime.image_ops.prune(all_unused)
    done.freed += cli.runtime.templates.remove_all()
    cli.runtime.spares.stop_all()  # (they would go by themselves, their templates gone)
    return done
