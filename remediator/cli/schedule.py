import click


@click.command("schedule")
def schedule() -> None:
    """stub"""
