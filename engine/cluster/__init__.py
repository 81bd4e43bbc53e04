"""``engine.run --ray``: the same job on a Ray cluster, one actor per node running the local
pipeline on shards of the datalist (docs/cluster.md)."""
