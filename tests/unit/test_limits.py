"""Limits: validation and what each dimension is charged (no I/O)."""

import subprocess
import sys
from pathlib import Path

import pytest

from guard import Limits, LimitsError


def test_anthropic_limits_charge_requests_input_and_output_separately():
    limits = Limits(50, 30000, 8000)
    assert limits.capacities() == {"requests": 50, "input_tokens": 30000, "output_tokens": 8000}
    assert limits.reservation(1, 1200, 4096) == {
        "requests": 1, "input_tokens": 1200, "output_tokens": 4096}
    # ITPM counts input + cache creation; cache reads are free on current models
    assert limits.usage(100, 50, 400, 9000) == {"input_tokens": 500, "output_tokens": 50}


def test_older_models_count_cache_reads_toward_itpm():
    limits = Limits(50, 30000, 8000, counts_cache_reads=True)
    assert limits.usage(100, 50, 400, 9000)["input_tokens"] == 9500


def test_bedrock_limits_combine_tokens_with_output_burndown():
    limits = Limits(None, tpm=200000, output_burndown=5)
    assert limits.bedrock
    assert limits.capacities() == {"tokens": 200000}
    assert limits.reservation(1, 1000, 2000) == {"tokens": 11000}
    assert limits.usage(1000, 300, 200, 5000) == {"tokens": 1000 + 200 + 1500}


@pytest.mark.parametrize("kwargs, message", [
    ({"rpm": 0}, "rpm must be a positive finite number"),
    ({"rpm": "50"}, "rpm must be a number, got str"),
    ({"rpm": True}, "rpm must be a number, got bool"),
    ({"rpm": float("nan")}, "rpm must be a positive finite number"),
    ({"rpm": None}, "at least one of rpm, itpm, otpm, tpm"),
    ({"rpm": 50, "itpm": 100, "tpm": 1000}, "tpm .* cannot be combined with itpm/otpm"),
    ({"rpm": 50, "itpm": 100, "output_burndown": 5}, "output_burndown applies only to a Bedrock"),
    ({"rpm": 50, "tpm": 100, "output_burndown": 0.5}, "output_burndown must be >= 1"),
    ({"rpm": 50, "tpm": 100, "counts_cache_reads": True}, "Bedrock does not count cache reads"),
    ({"rpm": 50, "counts_cache_reads": "yes"}, "counts_cache_reads must be a bool"),
])
def test_bad_limits_name_the_field(kwargs, message):
    with pytest.raises(LimitsError, match=message):
        Limits(**kwargs)


def test_importing_guard_does_not_import_the_sdks():
    code = ("import sys, guard; "
            "print(sorted(m for m in ('anthropic', 'boto3', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "lambdas")}).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("limits, amounts, cause", [
    (Limits(50, 30_000, 8_000), (1, 100, 9_000), "(max_tokens 9,000)"),
    (Limits(50, 30_000, 8_000), (1, 30_001, 10), "(an input of 30,001 tokens)"),
    (Limits(200, tpm=200_000, output_burndown=5), (1, 77, 48_000),
     "(max_tokens 48,000 x output_burndown 5 = 240,000 tokens)"),
    (Limits(200, tpm=200_000, output_burndown=5), (1, 150_000, 12_000),
     "(an input of 150,000 tokens + max_tokens 12,000 x output_burndown 5 = 60,000 tokens)"),
])
def test_a_reservation_that_never_fits_names_its_cause(limits, amounts, cause):
    assert cause in limits.never_fits(*amounts)
    assert limits.never_fits(1, 10, 10) is None
