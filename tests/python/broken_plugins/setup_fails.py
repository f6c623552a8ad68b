def setup(settings):
    raise RuntimeError("no model file")

def execute(ctx, input):
    return {}
