"""Sub-commands that compose library functions (the top of the import graph, below only rftlab.cli).

- `pipeline`: `rftlab pipeline` (sweep, then the bandit counterparts, then the report), `report`, `compare`.
- `bandit`: `rftlab bandit run|sweep|theory|pipeline`.
"""
