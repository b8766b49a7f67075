"""How every subcommand's --help looks: rich-click panels, examples and "see also".

A command is declared with `@click.command(cls=HopeCommand, examples=..., see_also=...,
option_panels=...)`. The examples become the help's closing "Examples" block and the man
page's EXAMPLES section; option_panels group the options under titles (rendered by
rich-click) and become the man page's OPTIONS subsections, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich_click import RichCommand, RichOptionPanel

# rich-click settings: keep \b blocks and blank lines between paragraphs, no markup in help
HELP_CONFIG = {"text_markup": None, "text_paragraph_linebreaks": "\n\n", "max_width": 100}

Example = tuple[str, str]  # (what it does, the command line)


class HopeCommand(RichCommand):
    """A subcommand with examples, related commands and (optionally) option panels.

    examples: (what it does, command) pairs, two or three real invocations.
    see_also: names of related `hope` subcommands.
    option_panels: (title, [option names or flags]) in display order; options not named
    in any panel are listed after them under "Options" (as rich-click does).
    """

    def __init__(self, *args, examples: Sequence[Example] = (), see_also: Sequence[str] = (),
                 option_panels: Sequence[tuple[str, Sequence[str]]] = (), **kwargs) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("rich_help_config", HELP_CONFIG)
        super().__init__(*args, context_settings=settings, **kwargs)
        self.examples = list(examples)
        self.see_also = list(see_also)
        self.option_panels = []
        self.set_option_panels(option_panels)

    def set_option_panels(self, option_panels: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Group the options (call once every option is attached to the command)."""
        self.option_panels = [(title, list(names)) for title, names in option_panels]
        if self.option_panels:
            self.panels = [RichOptionPanel(title, options=names) for title, names in self.option_panels]

    def grouped_params(self, ctx: click.Context) -> list[tuple[str | None, list[click.Parameter]]]:
        """(panel title, its parameters) in display order; ungrouped options come last."""
        params = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        if not self.option_panels:
            return [(None, params)]
        by_name = {n: p for p in params for n in (p.name, *p.opts, *p.secondary_opts)}
        groups, placed = [], set()
        for title, names in self.option_panels:
            members = [by_name[n] for n in names if n in by_name]
            placed.update(id(p) for p in members)
            groups.append((title, members))
        rest = [p for p in params if id(p) not in placed]
        if rest:
            groups.append(("Options", rest))
        return groups


    def format_epilog(self, ctx, formatter) -> None:
        """An "Examples" panel (a comment line, then the command) and a "See also" line."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        if self.examples:
            lines = []
            for i, (what, line) in enumerate(self.examples):
                lines += [Text("") if i else None, Text(f"# {what}", style="dim"), Text(line)]
            formatter.write(Panel(Group(*[x for x in lines if x is not None]), title="Examples",
                                  title_align="left", border_style="dim"))
        if self.see_also:
            formatter.write(Text(" See also: " + ", ".join(f"hope {name}" for name in self.see_also)))
        super().format_epilog(ctx, formatter)
