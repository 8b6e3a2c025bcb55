"""`python -m core.cli ...`: the `slmrec` command (torchrun and the app start it this way)."""

from core.cli import main
from core.jobs.launch import exit_process

exit_process(main())
