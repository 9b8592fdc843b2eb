"""`python -m arka_git_hcm` is `arka-hcm`."""

from .cli import main

main()
