"""One module per command: parse options, call the engine, render the result."""
