from zoomcal.cli.main import app

app(prog_name="zoomcal")
