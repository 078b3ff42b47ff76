"""What each stage computes, one plain module per stage, named like it: ``train``, ``generate``,
``knn``, ``classify`` (with ``null``, the chance level it computes), ``twins``, ``items`` (what the
basins and energy stages measure), ``basins``, ``energy``.

Stage X is ``stages/X.py`` (how it runs: Ray, shards, the study folder) over ``compute/X.py``
(what it computes). Nothing here imports Ray or the stages, so a test or a GPU box calls these
functions directly; nothing reads the tables (the stages read them and pass arrays in). This
file imports nothing, so importing one module does not import the others.
"""
