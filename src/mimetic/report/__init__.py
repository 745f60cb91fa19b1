"""Run records to tables, figures and verdicts: reading finished runs (`records`), paired
statistics (`stats`), the claims and published numbers (`claims`), comparisons between arms
(`compare`), the tables in four formats (`tables`, `render`), the results figures (`figures`)
and the attention-structure figures (`structure_figures`). What it writes is named in
`outputs`, which the workflow asks. Imports no torch; matplotlib only where a figure is drawn.
"""

from mimetic.report.outputs import FIGURES, TABLES, figure_files, table_files

__all__ = ["FIGURES", "TABLES", "figure_files", "table_files"]
