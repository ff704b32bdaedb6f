"""The `bigmodel` command line (Typer + Rich). It parses, calls the bigmodel library and renders;
the work itself lives in the library."""
