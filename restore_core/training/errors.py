"""The error every part of training raises for a run that cannot go on as asked (a bad
recipe, unusable data, a checkpoint that does not fit): the CLI prints it as one line."""


class TrainingError(RuntimeError):
    pass
