"""How readers meet the study: the notebooks' start and end, the runner, figures, widgets, the report card.

``notebook`` (what every notebook calls first and last), ``runs`` (run folders and ``latest``),
``runner`` (one notebook executed with papermill), ``monograph`` (the command line, the summary of
verdicts, HTML pages), ``plotting``, ``pictures`` and ``category_plots`` (every figure),
``widgets`` (the model explorer) and ``report`` (the report card of one model).
"""
