"""Scoring saliency maps against the eye-tracking ground truth of published datasets
(``salcli evaluate``).

- ``evaluate``: the entry, ``evaluate(dataset, ...)``: checks the options
  (``EvalOptions``), picks each split's source, scores the splits, builds the report;
- ``datasets``: the datasets on disk, in their published layouts;
- ``sources``: where the maps come from: predictions on disk, a model run, the centre
  baseline;
- ``protocols``: the published protocols (``dhf1k``, ``av``) as data, and the texts of
  the conventions;
- ``scoring``: the per-frame metrics and the per-video and per-split loops;
- ``report``: ``EvalResult``, its JSON and CSV documents, and writing them;
- ``cluster``: the model of an evaluation run on a Ray cluster (``--ray``).

The metrics themselves are :mod:`salcli.metrics` (pure numpy). Nothing here draws: the
command line (``salcli.cli.evaluate``) shows the progress and the results table.
"""
