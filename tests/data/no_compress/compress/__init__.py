raise ImportError("run_on_board.py must run without the compress package")
