import click


@click.command("report")
def report() -> None:
    """stub"""
