"""Length calibration: a requested length is sent as the command measured to give it."""

import json
import shutil

import pytest

from udrl.student.sampling import SAMPLING_FILE, LengthCalibration, Sampling, load_length_calibration, save_sampling
from udrl.student import CheckpointError, load_student


def test_command_is_read_off_the_measured_curve():
    # a student that overshoots: command 10 came to 12 words, 20 to 23, 30 to 34 (with a noisy dip at 25)
    curve = LengthCalibration.from_points([[20, 23.0], [10, 12.0], [25, 22.5], [30, 34.0]])
    assert curve.commands == (10.0, 20.0, 25.0, 30.0)
    assert curve.command_for(23.0) == pytest.approx(20.0)
    assert curve.command_for(17.5) == pytest.approx(15.0)  # halfway between 12 and 23 words
    assert curve.command_for(28.5) == pytest.approx(25.0)  # the dip is dropped: 23 -> 34 words over 20 -> 30
    assert curve.command_for(8.0) == pytest.approx(6.0)  # past the ends: one word per command
    assert curve.command_for(40.0) == pytest.approx(36.0)
    assert LengthCalibration.from_points(curve.points()) == curve
    for bad in ([], [[10, 12.0], [10, 13.0]], [[10, float("nan")]], [[10, "many"]]):
        with pytest.raises(ValueError):
            LengthCalibration.from_points(bad)


def test_student_sends_the_calibrated_length_token(tiny_student, tmp_path):
    checkpoint = tmp_path / "student"
    shutil.copytree(tiny_student, checkpoint)
    plain = load_student(checkpoint).generate(["lost cat"], "headline", length=12, seed=1)[0][0]
    assert plain.command["length"] == plain.command["length_token"] == 12  # no calibration: sent as asked

    curve = {"headline": LengthCalibration.from_points([[8, 10.0], [16, 19.0]])}
    save_sampling(checkpoint, {"headline": Sampling()}, {"command": "test"}, curve)
    assert load_length_calibration(checkpoint) == curve
    student = load_student(checkpoint)
    out = student.generate(["lost cat"], "headline", length=12, seed=1)[0][0]
    assert out.command["length"] == 12 and out.command["length_token"] == 10  # 8 + 8 * 2/9 = 9.8 -> 10
    assert student.generate(["lost cat"], "image_prompt", length=12)[0][0].command["length_token"] == 12
    twin = load_student(tiny_student).generate(["lost cat"], "headline", length=10, seed=1)[0][0]
    assert out.text == twin.text  # the same prompt as asking an uncalibrated student for 10 words

    data = json.loads((checkpoint / SAMPLING_FILE).read_text())
    data["length_calibration"] = {"headline": [[8, 10.0], [8, 11.0]]}
    (checkpoint / SAMPLING_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="length calibration"):
        load_student(checkpoint)
