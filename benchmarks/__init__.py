# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmarks of nixdeploy.fleet: ``python -m benchmarks`` (needs root for the lab).

1 overhead.py        the deploy playbook vs a plain shell deploy (baseline_deploy.sh)
2 eval_batching.py   one nix eval per host vs nix_eval's batches
3 copy_modes.py      push / substitute / cache over a shaped link; a no-op copy
4 inventory_parse.py the inventory plugin at 100 to 10,000 nodes
5 scaling.py         full deploy wall time against the number of hosts
"""
