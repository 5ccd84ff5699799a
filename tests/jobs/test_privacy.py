"""Differential privacy (jobs/privacy/: mechanisms, noise, ledger): contribution bound, noise, budget split and the
privacy ledger."""

import dataclasses
import datetime as dt
import math
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from pyspark.sql import functions as F

from jobs.lake import read_table
from jobs.privacy import mechanisms, noise
from jobs.privacy.ledger import (
    Charge,
    PrivacyBudgetExceeded,
    PrivacyLedger,
    ledger_entries,
    ledger_path,
    ledger_summary,
)
from jobs.schemas import PRIVACY_LEDGER
from jobs.settings import JobSettings

SECRET = "test-secret-0123456789abcdef"
DAY = dt.date(2025, 3, 10)
REDUCED = "device_id string, date date, hour int, cell long, pings long"


def _dp_settings(settings, **kw) -> JobSettings:
    values = {"dp_mechanism": "laplace", "dp_secret": SECRET, "dp_epsilon": 1.0, "dp_budget": 2.5} | kw
    return JobSettings(var_dir=settings.var_dir, **values)


def _counts(spark, n: int, value: int):
    """n keyed rows with the same true count: what is left after noising is the noise."""
    return spark.range(n).select(F.col("id").alias("cell"), F.lit(value).cast("long").alias("devices"))


# --------------------------------------------------------------------------------------------------------------
# Contribution bound


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 2),  # device
        st.integers(0, 5),  # hour
        st.integers(0, 9),  # finest cell
        st.integers(1, 9),  # pings
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda r: r[:3],
)


def _bounded(spark, rows, k, p, m, secret=SECRET) -> pd.DataFrame:
    df = spark.createDataFrame([(f"d{d}", DAY, h, c, n) for d, h, c, n in rows], REDUCED)
    out = noise.bound_contributions(df, k, secret, max_pings=p, max_cell_hours=m).toPandas()
    return out.sort_values(["device_id", "cell", "hour"], ignore_index=True)


def _tables(b: pd.DataFrame) -> dict[str, pd.Series]:
    """Daily and hourly counts at the finest res and a coarse one (cell // 3 nests like an H3 parent), and flows."""
    out = {}
    for res, cell in (("fine", b["cell"]), ("coarse", b["cell"] // 3)):
        t = b.assign(c=cell)
        out[f"devices_{res}"] = t.groupby("c")["device_id"].nunique()
        out[f"pings_{res}"] = t.groupby("c")["pings"].sum()
        h = t[t["in_hourly"]]
        out[f"hourly_devices_{res}"] = h.groupby(["c", "hour"])["device_id"].nunique()
        out[f"hourly_pings_{res}"] = h.groupby(["c", "hour"])["pings"].sum()
    seq = b.sort_values(["device_id", "hour", "cell"])
    pairs = pd.DataFrame({"d": seq["device_id"], "f": seq["cell"], "t": seq.groupby("device_id")["cell"].shift(-1)})
    pairs = pairs[pairs["t"].notna() & (pairs["f"] != pairs["t"])]
    out["flows"] = pairs.groupby(["f", "t"])["d"].nunique()
    return out


@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy, k=st.integers(1, 4), p=st.integers(1, 6), m=st.integers(1, 6))
def test_each_person_day_contributes_within_the_bound(spark, rows, k, p, m):
    raw = pd.DataFrame(rows, columns=["device", "hour", "cell", "pings"]).assign(
        device_id=lambda d: "d" + d.device.map(str)
    )
    b = _bounded(spark, rows, k, p, m)
    for device, got in b.groupby("device_id"):
        given_rows = raw[raw["device_id"] == device]
        kept = set(got["cell"])
        assert kept <= set(given_rows["cell"]) and len(kept) == min(k, given_rows["cell"].nunique())
        # every row of a kept cell is kept (the bound drops whole cells), with pings clipped to p per cell
        assert len(got) == len(given_rows[given_rows["cell"].isin(kept)])
        in_pings = given_rows.groupby("cell")["pings"].sum()
        for cell, total in got.groupby("cell")["pings"].sum().items():
            assert total == min(p, in_pings[cell])
        assert (got["pings"] >= 0).all()
        assert got["in_hourly"].sum() == min(m, len(got))
        if m >= len(kept):
            assert set(got.loc[got["in_hourly"], "cell"]) == kept

    # Neighbouring data: removing one person-day (the busiest) changes every table by at most the declared
    # sensitivity. Every step of the bound is a window over one (device_id, date), so the neighbour's bounded rows
    # are these rows without that person-day's.
    bound = mechanisms.ContributionBound(k, p, m)
    without = b[b["device_id"] != raw["device_id"].value_counts().idxmax()]
    full, less = _tables(b), _tables(without)
    for name, table in full.items():
        diff = table.sub(less[name], fill_value=0).abs()
        kind = "flows" if name == "flows" else ("density_hourly" if name.startswith("hourly") else "density")
        s = bound.sensitivity(kind, "pings" if "pings" in name else "devices")
        assert diff.sum() <= s.l1 + 1e-9, name
        assert math.sqrt((diff**2).sum()) <= s.l2 + 1e-9, name


def test_kept_cells_are_a_keyed_pseudo_random_choice_not_the_first_k(spark):
    rows = [(f"d{i}", DAY, 0, c, 1) for i in range(300) for c in (11, 22, 33, 44)]
    df = spark.createDataFrame(rows, REDUCED)

    def kept(secret):
        return noise.bound_contributions(df, 2, secret).select("device_id", "cell").toPandas()

    first, again, other = kept(SECRET), kept(SECRET), kept(SECRET + "-rotated")
    per_cell = first["cell"].value_counts()
    assert set(per_cell.index) == {11, 22, 33, 44} and per_cell.between(110, 190).all()  # ≈ 150 each
    key = ["device_id", "cell"]
    assert first.sort_values(key, ignore_index=True).equals(again.sort_values(key, ignore_index=True))
    changed = first.merge(other, how="outer", indicator=True)["_merge"].ne("both").sum()
    assert changed > 100  # another secret, another choice


# --------------------------------------------------------------------------------------------------------------
# Noise


def _noise(spark, mechanism, *, n=4000, value=1000, salt="density/2025-03-10#1", floor=0, **kw):
    params = {"epsilon": 1.0, "delta": 1e-5, "l1_sensitivity": 1.0, "l2_sensitivity": 1.0} | kw
    noisy = noise.add_noise(
        _counts(spark, n, value),
        ["devices"],
        ["cell"],
        mechanism=mechanism,
        secret=SECRET,
        salt=salt,
        floor=floor,
        **params,
    )
    return noisy.orderBy("cell").toPandas()["devices"]


def test_noise_is_deterministic_given_the_salt_and_fresh_for_another(spark):
    a, b = _noise(spark, "laplace", n=500, l1_sensitivity=20), _noise(spark, "laplace", n=500, l1_sensitivity=20)
    c = _noise(spark, "laplace", n=500, l1_sensitivity=20, salt="density/2025-03-10#2")
    assert a.equals(b)
    assert (a != c).mean() > 0.8
    two = noise.add_noise(
        _counts(spark, 500, 1000).withColumn("pings", F.col("devices")),
        ["devices", "pings"],
        ["cell"],
        mechanism="gaussian",
        epsilon=1.0,
        delta=1e-5,
        l1_sensitivity=1.0,
        l2_sensitivity=10.0,
        secret=SECRET,
        salt="s",
    ).toPandas()
    assert (two["devices"] != two["pings"]).mean() > 0.8  # each column gets its own noise


def test_laplace_noise_has_the_declared_scale(spark):
    b = 10.0
    drawn = _noise(spark, "laplace", epsilon=0.5, l1_sensitivity=5.0) - 1000
    assert mechanisms.noise_scale("laplace", 0.5, 0.0, 5.0, 0.0) == b
    assert abs(drawn.mean()) < 1.0  # standard error ≈ 0.22
    assert drawn.std() == pytest.approx(math.sqrt(2) * b, rel=0.07)
    assert (drawn.abs() <= b).mean() == pytest.approx(1 - math.exp(-1), abs=0.03)  # P(|X| ≤ b) for Laplace(b)


def test_gaussian_noise_has_the_declared_sigma(spark):
    sigma = mechanisms.gaussian_sigma(1.0, 1e-5, 2.0)
    drawn = _noise(spark, "gaussian", epsilon=1.0, delta=1e-5, l2_sensitivity=2.0) - 1000
    assert abs(drawn.mean()) < 0.6  # standard error ≈ 0.12
    assert drawn.std() == pytest.approx(sigma, rel=0.07)
    assert (drawn.abs() <= sigma).mean() == pytest.approx(0.6827, abs=0.03)


def test_noisy_counts_are_rounded_and_never_below_the_floor(spark):
    noisy = noise.add_noise(
        _counts(spark, 500, 16),
        ["devices"],
        ["cell"],
        mechanism="laplace",
        epsilon=0.1,
        delta=0.0,
        l1_sensitivity=5.0,
        l2_sensitivity=5.0,
        secret=SECRET,
        salt="s",
        floor=16,
    )
    assert dict(noisy.dtypes)["devices"] == "bigint"
    got = noisy.toPandas()["devices"]
    assert got.min() == 16 and (got == 16).mean() > 0.4 and got.max() > 60


def test_a_row_without_a_salt_fails_rather_than_publishing_unnoised(spark):
    salts = noise.salt_column("cell", {0: "a"})
    with pytest.raises(Exception, match="no DP salt"):
        noise.add_noise(
            _counts(spark, 2, 100),
            ["devices"],
            ["cell"],
            mechanism="laplace",
            epsilon=1.0,
            delta=0.0,
            l1_sensitivity=1.0,
            l2_sensitivity=1.0,
            secret=SECRET,
            salt=salts,
        ).collect()


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
def test_the_spark_noise_of_every_row_is_the_seeded_noise_of_its_value(spark, mechanism):
    days = {DAY: "density/2025-03-10#1.1#fp", DAY + dt.timedelta(days=1): "density/2025-03-11#1.2#fp"}
    rows = [(cell, day, f"r{cell % 3}", 500 + cell) for cell in range(40) for day in days]
    frame = spark.createDataFrame(rows, "cell long, date date, route string, devices long")
    params = {"mechanism": mechanism, "epsilon": 0.5, "delta": 1e-6, "l1_sensitivity": 3.0, "l2_sensitivity": 2.0}
    noisy = noise.add_noise(
        frame,
        ["devices"],
        ["cell", "date", "route"],
        secret=SECRET,
        salt=noise.salt_column("date", days),
        floor=-9999,
        **params,
    )
    scale = mechanisms.noise_scale(mechanism, 0.5, 1e-6, 3.0, 2.0)
    expected = {
        (cell, day): mechanisms.noisy_count(
            devices,
            mechanisms.seeded_noise(
                mechanism, scale, SECRET, days[day], "devices", {"cell": cell, "date": day, "route": route}
            ),
            floor=-9999,
        )
        for cell, day, route, devices in rows
    }
    got = {(r.cell, r.date): r.devices for r in noisy.collect()}
    assert got == expected
    assert sum(got[cell, day] != devices for cell, day, _, devices in rows) > 70  # and noised


def test_seeded_noise_is_a_function_of_the_secret_salt_column_and_key_only():
    def draw(secret=SECRET, salt="s#1", column="devices", key=None, scale=10.0):
        return mechanisms.seeded_noise("laplace", scale, secret, salt, column, key or {"cell": 7, "date": DAY})

    first = draw()
    assert draw() == first
    assert len({first, draw(secret=SECRET + "!"), draw(salt="s#2"), draw(column="pings"), draw(key={"cell": 8})}) == 5
    assert draw(scale=20.0) != 2 * first  # another scale is fresh noise, not this noise rescaled
    assert mechanisms.noise_message("s", "laplace:2.0", "devices", {"cell": 7, "date": DAY, "hour": None}) == (
        '{"salt":"s","params":"laplace:2.0","column":"devices","key":{"cell":7,"date":"2025-03-10"}}'
    )
    with pytest.raises(TypeError, match="float"):
        mechanisms.noise_message("s", "t", "devices", {"x": 0.5})
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        draw(secret=mechanisms.DEFAULT_SECRET)


def test_noisy_counts_round_halves_away_from_zero_and_respect_the_floor():
    assert [mechanisms.noisy_count(10, n, floor=-99) for n in (0.5, -0.5, 0.49, -10.5, -11.5)] == [11, 10, 10, -1, -2]
    assert mechanisms.noisy_count(10, -8.0, floor=16) == 16
    u = mechanisms.uniform("0" * 13 + "f" * 13, 0), mechanisms.uniform("0" * 13 + "f" * 13, 1)
    assert 0 < u[0] < 1e-15 and 1 - 1e-15 < u[1] < 1
    assert mechanisms.laplace(2.0, 0.5) == 0.0 and mechanisms.laplace(2.0, 0.75) == pytest.approx(2 * math.log(2))


def test_the_mechanisms_and_the_ledger_start_no_spark():
    code = (
        "import sys, jobs.privacy.mechanisms;"
        "print('pyspark' in sys.modules);"
        "import jobs.privacy.ledger;"
        "from pyspark import SparkContext;"
        "print(SparkContext._active_spark_context is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_analytic_gaussian_sigma_is_the_smallest_that_meets_delta():
    # Reference: ε=1, δ=1e-5, Δ₂=1 → σ ≈ 3.7306 (Balle & Wang 2018; also scipy brentq on their Theorem 8).
    assert mechanisms.gaussian_sigma(1.0, 1e-5, 1.0) == pytest.approx(3.73063, rel=1e-5)
    for eps, delta, l2 in [(0.05, 1e-6, 8.0), (0.5, 1e-9, 1.0), (4.0, 1e-6, 3.0)]:
        sigma = mechanisms.gaussian_sigma(eps, delta, l2)
        assert (
            mechanisms.gaussian_delta(sigma, eps, l2) <= delta < mechanisms.gaussian_delta(sigma * (1 - 1e-6), eps, l2)
        )
        if eps < 1:
            assert sigma < mechanisms.gaussian_sigma(eps, delta, l2, analytic=False)
    with pytest.raises(ValueError, match="epsilon < 1"):
        mechanisms.gaussian_sigma(2.0, 1e-6, 1.0, analytic=False)
    with pytest.raises(ValueError, match="delta"):
        mechanisms.noise_scale("gaussian", 1.0, 0.0, 1.0, 1.0)


def test_the_release_budget_is_split_over_its_queries():
    shares = mechanisms.split_budget(1.0, 1e-6, [2, 1, 1])
    assert shares == [(0.5, 5e-7), (0.25, 2.5e-7), (0.25, 2.5e-7)]
    charge = Charge("2025-03", 1, "density/2025-03-10", DAY, "gaussian", 1.0, 1e-6, "fp", dt.datetime.now(dt.UTC), True)
    bound = mechanisms.ContributionBound(max_cells=4, max_pings=3, max_cell_hours=12)
    plan = mechanisms.plan_release(
        charge,
        bound,
        {
            "density.devices": mechanisms.Query("density", "devices", count=5, weight=2),
            "density.pings": mechanisms.Query("density", "pings", count=5),
            "flows.devices": mechanisms.Query("flows", "devices"),
        },
    )
    total = 5 * plan["density.devices"].epsilon + 5 * plan["density.pings"].epsilon + plan["flows.devices"].epsilon
    assert total == pytest.approx(1.0) and plan["density.devices"].epsilon == pytest.approx(2 / 16)
    assert (plan["density.pings"].l1_sensitivity, plan["density.pings"].l2_sensitivity) == (12, 12)
    assert (plan["flows.devices"].l1_sensitivity, plan["density.devices"].l2_sensitivity) == (12, 2.0)
    assert plan["flows.devices"].salt == f"{charge.salt}/flows.devices"


# --------------------------------------------------------------------------------------------------------------
# Fingerprint and ledger


def test_fingerprint_depends_on_the_data_and_params_not_on_row_order(spark):
    rows = [(c, 20 + c, DAY + dt.timedelta(days=c % 2)) for c in range(50)]
    df = spark.createDataFrame(rows, "cell long, devices long, date date")
    fp = noise.fingerprint({"density": df}, SECRET, params={"max_cells": 8})
    shuffled = spark.createDataFrame(rows[::-1], df.schema).repartition(3)
    assert noise.fingerprint({"density": shuffled}, SECRET, params={"max_cells": 8}) == fp
    changed = df.withColumn("devices", F.when(F.col("cell") == 7, 99).otherwise(F.col("devices")))
    assert noise.fingerprint({"density": changed}, SECRET, params={"max_cells": 8}) != fp
    assert noise.fingerprint({"density": df}, SECRET, params={"max_cells": 4}) != fp
    assert noise.fingerprint({"density": df}, SECRET + "!", params={"max_cells": 8}) != fp
    by_date = noise.fingerprints_by({"density": df}, SECRET, "date", params={})
    by_date_changed = noise.fingerprints_by({"density": changed}, SECRET, "date", params={})
    assert set(by_date) == {DAY, DAY + dt.timedelta(days=1)}
    assert (
        by_date[DAY] == by_date_changed[DAY]
        and by_date[DAY + dt.timedelta(days=1)] != by_date_changed[DAY + dt.timedelta(days=1)]
    )


def test_ledger_accepts_within_budget_and_refuses_beyond_it(settings):
    ledger = PrivacyLedger(_dp_settings(settings))  # ε = 1 per release, budget 2.5 per month
    first = ledger.charge("density/2025-03-10", DAY, "fp-a")
    second = ledger.charge("density/2025-03-11", DAY + dt.timedelta(days=1), "fp-b")
    assert (first.seq, second.seq, first.new, ledger.spent("2025-03")) == (1, 2, True, 2.0)
    with pytest.raises(PrivacyBudgetExceeded) as refused:
        ledger.charge("density/2025-03-12", DAY + dt.timedelta(days=2), "fp-c")
    message = str(refused.value)
    for part in ("2025-03", "spent ε=2", "ε=1", "budget ε=2.5", "ROUTECAST_DP_BUDGET"):
        assert part in message
    assert len(ledger.entries()) == 2 and ledger.spent("2025-03") == 2.0  # nothing written


def test_recharging_the_same_input_is_free_and_a_new_input_is_a_new_charge(settings):
    ledger = PrivacyLedger(_dp_settings(settings, dp_budget=5.0))
    first = ledger.charge("density/2025-03-10", DAY, "fp-a")
    again = ledger.charge("density/2025-03-10", DAY, "fp-a")
    assert again == dataclasses.replace(first, new=False) and again.salt == first.salt
    assert ledger.spent("2025-03") == 1.0

    late = ledger.charge("density/2025-03-10", DAY, "fp-a-with-late-data")
    assert late.new and late.seq == 2 and late.salt != first.salt
    assert ledger.spent("2025-03") == 2.0
    assert ledger.charge("density/2025-03-10", DAY, "fp-a").seq == 1  # still free, still the first noise


def test_each_month_has_its_own_budget(settings, spark):
    s = _dp_settings(settings, dp_mechanism="gaussian", dp_delta=1e-6, dp_budget=1.0)
    ledger = PrivacyLedger(s)
    ledger.charge("density/2025-03-31", dt.date(2025, 3, 31), "fp-march")
    with pytest.raises(PrivacyBudgetExceeded):
        ledger.charge("density/2025-03-30", dt.date(2025, 3, 30), "fp-march-2")
    april = ledger.charge("density/2025-04-01", dt.date(2025, 4, 1), "fp-april")
    assert (april.period, april.seq, april.delta) == ("2025-04", 1, 1e-6)

    summary = ledger_summary(s)
    assert summary[["period", "charges", "epsilon_spent", "remaining"]].values.tolist() == [
        ["2025-03", 1, 1.0, 0.0],
        ["2025-04", 1, 1.0, 0.0],
    ]
    assert list(ledger_entries(s, "2025-04")["release"]) == ["density/2025-04-01"]
    on_spark = read_table(spark, ledger_path(s), PRIVACY_LEDGER).orderBy("period").collect()
    assert [(r.period, r.release, r.mechanism) for r in on_spark] == [
        ("2025-03", "density/2025-03-31", "gaussian"),
        ("2025-04", "density/2025-04-01", "gaussian"),
    ]


def test_dp_refuses_the_default_secret_and_dp_off(settings, spark):
    # JobSettings itself refuses these (tests/jobs/test_settings_and_spark.py); settings copied without validation
    # reach the ledger, which refuses them too.
    def unchecked(secret: str) -> JobSettings:
        return _dp_settings(settings).model_copy(update={"dp_secret": SecretStr(secret)})

    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        PrivacyLedger(unchecked(mechanisms.DEFAULT_SECRET))
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        PrivacyLedger(unchecked("short"))
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        PrivacyLedger(unchecked("0123012301230123"))  # long enough, 4 distinct characters
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_MECHANISM"):
        PrivacyLedger(_dp_settings(settings, dp_mechanism="none"))
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        noise.add_noise(
            _counts(spark, 2, 100),
            ["devices"],
            ["cell"],
            mechanism="laplace",
            epsilon=1.0,
            delta=0.0,
            l1_sensitivity=1.0,
            l2_sensitivity=1.0,
            secret=mechanisms.DEFAULT_SECRET,
            salt="s",
        )
    with pytest.raises(mechanisms.DPConfigError, match="ROUTECAST_DP_SECRET"):
        noise.bound_contributions(spark.createDataFrame([], REDUCED), 8, "change-me")


# --------------------------------------------------------------------------------------------------------------
# The whole release, as the aggregation job runs it


def test_a_rerun_reproduces_the_release_and_late_data_gets_fresh_noise(spark, settings):
    s = _dp_settings(settings, dp_budget=10.0)
    secret = mechanisms.require_dp(s)
    bound = mechanisms.ContributionBound.from_settings(s)
    days = [DAY, DAY + dt.timedelta(days=1)]

    def release(extra_devices: int) -> tuple[dict, pd.DataFrame]:
        rows = [(f"{d}-{i}", d, 9, 100 + i % 2, 3) for d in days for i in range(40)]
        rows += [(f"late-{i}", DAY, 10, 100, 1) for i in range(extra_devices)]
        bounded = noise.apply_bound(spark.createDataFrame(rows, REDUCED), bound, secret)
        density = (
            bounded.groupBy("cell", "date")
            .agg(F.countDistinct("device_id").alias("devices"))
            .where(F.col("devices") > s.min_devices)  # suppression on the unnoised counts, before any noise
            .cache()
        )
        queries = {"devices": mechanisms.Query("density", "devices")}
        params = noise.fingerprint_params(bound, queries, min_devices=s.min_devices)
        fps = noise.fingerprints_by({"density": density}, secret, "date", params=params)
        ledger = PrivacyLedger(s)
        charges = {d: ledger.charge(f"density/{d}", d, fps[d]) for d in days}
        plan = {d: mechanisms.plan_release(c, bound, queries) for d, c in charges.items()}
        noisy = noise.add_noise(
            density,
            ["devices"],
            ["cell", "date"],
            secret=secret,
            floor=s.min_devices + 1,
            # one call for both dates (same ε and sensitivities), each date with its own charge's salt
            **plan[DAY]["devices"].kwargs(
                salt=noise.salt_column("date", {d: p["devices"].salt for d, p in plan.items()})
            ),
        )
        out = noisy.orderBy("date", "cell").toPandas()
        density.unpersist()
        return charges, out

    charges, published = release(0)
    charges_again, published_again = release(0)
    assert published.equals(published_again)
    assert not any(c.new for c in charges_again.values()) and PrivacyLedger(s).spent("2025-03") == 2.0

    charges_late, published_late = release(5)
    assert charges_late[DAY].new and not charges_late[days[1]].new
    day2 = published["date"] == days[1]
    assert published[day2].equals(published_late[published_late["date"] == days[1]])
    assert PrivacyLedger(s).spent("2025-03") == 3.0
