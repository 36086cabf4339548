from archlang.cli import entry

entry()
