from fewlabel.cli.main import app

app(prog_name="fewlabel")
