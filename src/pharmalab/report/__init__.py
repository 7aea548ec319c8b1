"""One self-contained HTML report per study (Jinja2 template, Plotly figures, tables).

The report knows no capability: the study runner hands it sections made of blocks
(key-value lists, tables, figures, text).
"""

from pharmalab.report.html import Block, Section, figure, keyvalues, render, table, text

__all__ = ["Block", "Section", "figure", "keyvalues", "render", "table", "text"]
