"""The student: command encoding, sampling settings and calibration, decoding, and the model that ties them.

``load_student(path).generate(intents, task, relevance=, length=, n=, seed=)`` is the one entry point used by
evaluation, the benchmark and the app.
"""

from udrl.student.model import CheckpointError, Student, StudentOutput, check_checkpoint, load_student

__all__ = ["CheckpointError", "Student", "StudentOutput", "check_checkpoint", "load_student"]
