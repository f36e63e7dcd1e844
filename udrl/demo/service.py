"""The models behind the app: the student loads at once, the teacher in the background.

Each side reports its status; a side that failed to load says what is missing and how to fix it, and
the other side keeps working. Calls into each model are serialised by a lock: llama.cpp contexts are not
thread-safe, and on two cores two concurrent forward passes are slower than two in turn.
"""

from __future__ import annotations

import os
import threading
import time

from udrl.student import CheckpointError, Student, load_student
from udrl.teacher import Teacher, TeacherUnavailable, load_teacher

DEFAULT_CHECKPOINT = "checkpoints/student"


class ModelUnavailable(RuntimeError):
    """A model the request needs is not loaded; the message says why."""


class Models:
    def __init__(self, checkpoint: str | None = None, teacher_backend: str | None = None,
                 teacher_model: str | None = None):
        self.checkpoint = checkpoint or os.environ.get("UDRL_CHECKPOINT", DEFAULT_CHECKPOINT)
        self.teacher_backend = teacher_backend or os.environ.get("UDRL_TEACHER_BACKEND", "llama.cpp")
        self.teacher_model = teacher_model or os.environ.get("UDRL_TEACHER_MODEL") or None
        self._student: Student | None = None
        self._teacher: Teacher | None = None
        self.student_error: str | None = None
        self.teacher_error: str | None = None
        self.teacher_state = "not started"
        self.student_lock = threading.Lock()
        self.teacher_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._teacher_thread: threading.Thread | None = None

    # -- loading ------------------------------------------------------------------------------------
    def load_student(self) -> None:
        with self._start_lock:
            if self._student is not None or self.student_error:
                return
            try:
                self._student = load_student(self.checkpoint)
            except CheckpointError as err:
                self.student_error = str(err)

    def start_teacher(self) -> None:
        """Load the teacher on a background thread (once)."""
        with self._start_lock:
            if self._teacher_thread is not None:
                return
            self.teacher_state = "loading"
            self._teacher_thread = threading.Thread(target=self._load_teacher, daemon=True, name="teacher-load")
            self._teacher_thread.start()

    def _load_teacher(self) -> None:
        started = time.perf_counter()
        try:
            url = os.environ.get("UDRL_TEACHER_URL") if self.teacher_backend == "openai" else None
            self._teacher = load_teacher(self.teacher_backend, model=self.teacher_model, url=url)
            self.teacher_state = f"ready ({time.perf_counter() - started:.1f} s)"
        except (TeacherUnavailable, ValueError, OSError, RuntimeError) as err:
            self.teacher_error = str(err)
            self.teacher_state = "unavailable"

    def start(self) -> Models:
        self.load_student()
        self.start_teacher()
        return self

    def wait_teacher(self, timeout: float = 120.0) -> bool:
        if self._teacher_thread is not None:
            self._teacher_thread.join(timeout)
        return self._teacher is not None

    # -- access -------------------------------------------------------------------------------------
    @property
    def student(self) -> Student:
        self.load_student()
        if self._student is None:
            raise ModelUnavailable(f"Student unavailable: {self.student_error}")
        return self._student

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            if self.teacher_error:
                raise ModelUnavailable(f"Teacher unavailable: {self.teacher_error}")
            raise ModelUnavailable("The teacher is still loading; the student works meanwhile. Try again in a "
                                   "few seconds.")
        return self._teacher

    @property
    def teacher_ready(self) -> bool:
        return self._teacher is not None

    @property
    def teacher_version(self) -> str:
        return f"{self.teacher_backend}:{self.teacher_model or 'SmolLM2-135M-Instruct.Q4_1.gguf'}"

    def status_markdown(self) -> str:
        if self._student is not None:
            s = self._student
            student = f"**Student** ready: {s.parameters / 1e6:.1f}M parameters from `{self.checkpoint}`"
        else:
            student = f"**Student** unavailable: {self.student_error or 'not loaded'}"
        if self._teacher is not None:
            teacher = f"**Teacher** {self.teacher_state}: `{self.teacher_version}`"
        elif self.teacher_error:
            teacher = f"**Teacher** unavailable: {self.teacher_error}"
        else:
            teacher = f"**Teacher** {self.teacher_state}: `{self.teacher_version}` (the student works meanwhile)"
        return f"{student}  \n{teacher}"
