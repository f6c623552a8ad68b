REQUIREMENT = {"threads": 2}

def execute(ctx, input):
    return {}
