import module_that_does_not_exist

def execute(ctx, input):
    return {}
