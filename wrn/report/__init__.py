"""Reporting: results.csv (one schema, reader, writer, aggregation), figures, tables, published numbers.

    results.py   the results.csv schema, reader (validated), writer, mean ± std per configuration,
                 Pareto front
    summary.py   `wrn sweep summarize`: one line per configuration, as a text table, CSV or JSON
    text.py      the one text-table renderer and number formats
    names.py     display names of models and datasets
    runinfo.py   what the runs were (training subset, epochs), for titles and captions
    styles.py    colours, markers and axes shared by the figures
    labels.py    point labels placed without overlaps (capped, linear in the number of points)
    figures.py   error against parameters, FLOPs and training cost
    heatmap.py   the Wide ResNet depth x width heatmap;  curves.py  validation curves
    plot.py      `wrn plot`;  tables.py  `wrn table`;  paper.py  the published numbers
"""
