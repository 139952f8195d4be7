"""The differential campaign of the evaluation cache's reuse across commits
(issue 63): random commits to a flake of the shapes people write, each
commit's every host answered by the stage with its persistent cache and
checked against a plain uncached ``nix eval``.

  python -m tests.evaldiff --commits 300 [--seed S] [--keep]   # make eval-diff
  python -m tests.evaldiff --seed S --commits K --every-shape --without pos,where \
      --edits setting,empty     # every shape of issue 76, some left out, some edits only
"""
