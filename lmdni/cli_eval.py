from .cli import eval_main

eval_main()
