"""`python -m bigmodel_cli ...` (also what `torchrun -m bigmodel_cli train ...` runs)."""

from .app import main

if __name__ == "__main__":
    main()
