"""The privacy core: clipping, noise calibration, accounting, federated k-means."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedaso.aso.anchors import federated_kmeans, kmeans_anchors, local_centroids
from fedaso.config import RunConfig
from fedaso.privacy import (
    RELEVANCE_FLOOR,
    PrivacyAccount,
    PrivacyConfig,
    central_noisy_mean,
    centroid_sensitivity,
    clip_frobenius,
    local_release,
    local_release_norm_bound,
    noisy_relevance,
    release_centroids,
)

STD_TOLERANCE = 0.03  # relative; the std estimates below use >= 20,000 draws (error ~0.5%)


def test_clipping_bounds_every_norm_and_keeps_small_changes():
    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 100.0):
        delta = scale * rng.standard_normal((8, 5))
        clipped = clip_frobenius(delta, 2.0)
        assert np.linalg.norm(clipped) <= 2.0 + 1e-9
        if np.linalg.norm(delta) <= 2.0:
            np.testing.assert_array_equal(clipped, delta)
        else:  # same direction, scaled down
            np.testing.assert_allclose(
                clipped / np.linalg.norm(clipped), delta / np.linalg.norm(delta)
            )
    np.testing.assert_array_equal(clip_frobenius(np.full((2, 2), 9.0), 0.0), np.full((2, 2), 9.0))
    np.testing.assert_array_equal(clip_frobenius(np.zeros((2, 2)), 1.0), np.zeros((2, 2)))


def test_local_release_noise_has_std_sigma_2c():
    # Replace-one sensitivity 2C (issue 17): the server sees every report.
    rng = np.random.default_rng(1)
    delta = 50.0 * np.ones((40, 50))  # norm far above C: clipped to C
    clip, sigma = 3.0, 0.7
    noises = [
        local_release(delta, clip=clip, noise_multiplier=sigma, rng=rng)
        - clip_frobenius(delta, clip)
        for _ in range(10)
    ]
    noise = np.concatenate(noises).ravel()  # 20,000 draws
    assert abs(noise.mean()) < 0.05 * sigma * clip
    assert noise.std() == pytest.approx(sigma * 2 * clip, rel=STD_TOLERANCE)


def test_central_noisy_mean_has_std_sigma_c_over_n_and_a_fixed_denominator():
    rng = np.random.default_rng(2)
    clip, sigma, expected = 2.0, 1.3, 5
    deltas = [np.full((40, 50), 10.0), np.full((40, 50), -0.001)]  # one clipped, one not
    exact = (clip_frobenius(deltas[0], clip) + deltas[1]) / expected  # 2 replies over n=5
    draws = [
        central_noisy_mean(
            deltas, clip=clip, noise_multiplier=sigma, expected_count=expected, rng=rng
        )
        - exact
        for _ in range(10)
    ]
    noise = np.concatenate(draws).ravel()
    assert noise.std() == pytest.approx(sigma * clip / expected, rel=STD_TOLERANCE)
    assert abs(noise.mean()) < 0.05 * sigma * clip / expected
    no_noise = central_noisy_mean(
        deltas, clip=clip, noise_multiplier=0.0, expected_count=5, rng=rng
    )
    np.testing.assert_allclose(no_noise, exact)
    with pytest.raises(ValueError, match="expected_count=1"):
        central_noisy_mean(deltas, clip=clip, noise_multiplier=1.0, expected_count=1, rng=rng)


@pytest.mark.parametrize(("replace_one", "factor"), [(False, 2.0), (True, 6.0)])
def test_centroid_release_is_one_gaussian_mechanism_of_multiplier_sigma(replace_one, factor):
    rng = np.random.default_rng(3)
    centroids, fractions = np.zeros((100, 100)), np.full(100, 0.01)
    clip, sigma = 4.0, 0.5
    release = {"clip": clip, "noise_multiplier": sigma, "replace_one": replace_one, "rng": rng}
    noisy, noisy_fractions = release_centroids(centroids, fractions, **release)
    # (Z, C f) has norm <= sqrt(2) C (add/remove, the trusted server's release); two such
    # vectors differ by <= sqrt(6) C (replace-one, a client's own release).
    sensitivity = math.sqrt(factor) * clip
    assert noisy.std() == pytest.approx(sigma * sensitivity, rel=STD_TOLERANCE)
    many = [release_centroids(centroids, fractions, **release)[1] for _ in range(300)]
    assert (np.concatenate(many) - 0.01).std() == pytest.approx(
        sigma * sensitivity / clip, rel=0.03
    )
    assert noisy_fractions.shape == (100,)
    with pytest.raises(ValueError, match="sum to 1"):
        release_centroids(centroids, fractions * 2, **release)


def test_replace_one_centroid_sensitivity_bounds_two_extreme_answers():
    clip = 3.0
    z = np.zeros((2, 2))
    z[0, 0] = clip
    f, f_other = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    farthest = np.sqrt(np.sum((z - -z) ** 2) + np.sum((clip * f - clip * f_other) ** 2))
    assert farthest == pytest.approx(centroid_sensitivity(clip, replace_one=True))
    assert np.sqrt(np.sum(z**2) + np.sum((clip * f) ** 2)) == pytest.approx(
        centroid_sensitivity(clip, replace_one=False)
    )


def test_noisy_relevance_stays_a_usable_weight():
    rng = np.random.default_rng(4)
    values = [noisy_relevance(0.5, noise=0.05, rng=rng) for _ in range(20_000)]
    assert np.std(values) == pytest.approx(0.05, rel=STD_TOLERANCE)
    extreme = [noisy_relevance(0.5, noise=100.0, rng=rng) for _ in range(100)]
    assert set(extreme) <= {RELEVANCE_FLOOR, 1.0}
    assert noisy_relevance(0.3, noise=0.0, rng=rng) == 0.3


def test_account_epsilon_is_opacus_epsilon_and_grows():
    account, reference = PrivacyAccount(), RDPAccountant()
    epsilons = []
    for _ in range(5):
        account.record(noise_multiplier=1.1, sample_rate=0.2)
        reference.step(noise_multiplier=1.1, sample_rate=0.2)
        epsilons.append(account.epsilon(1e-5))
        assert epsilons[-1] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)
    assert all(b > a for a, b in itertools.pairwise(epsilons))
    # A mix of mechanisms composes like Opacus' history.
    account.record(noise_multiplier=2.0, sample_rate=1.0, steps=3)
    reference.history.append((2.0, 1.0, 3))
    assert account.epsilon(1e-5) == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)
    again = PrivacyAccount.from_lists(account.to_lists())
    assert again.epsilon(1e-5) == account.epsilon(1e-5) and again.releases == 8


def test_epsilon_without_noise_is_infinite_never_zero():
    account = PrivacyAccount()
    assert account.epsilon(1e-5) == 0.0  # nothing released yet
    account.record(noise_multiplier=0.0, sample_rate=0.5)
    assert account.epsilon(1e-5) == math.inf
    with pytest.raises(ValueError, match="sample_rate=0"):
        account.record(noise_multiplier=1.0, sample_rate=0.0)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"anchor_dp": "global"}, "anchor-dp='global'"),
        ({"anchor_dp": "local", "anchor_clip": 0.0}, "anchor-clip=0.0"),
        ({"anchor_noise_multiplier": -1.0}, "anchor-noise-multiplier=-1.0"),
        ({"anchor_delta": 1.0}, "anchor-delta=1.0"),
        ({"anchor_init": "random"}, "anchor-init='random'"),
        ({"update_dp": "adaptive"}, "update-dp='adaptive'"),
        ({"update_clip": 0.0}, "update-clip=0.0"),
        ({"dp_max_grad_norm": math.inf}, "dp-max-grad-norm=inf"),
        ({"relevance_noise": -0.1}, "relevance-noise=-0.1"),
    ],
)
def test_bad_privacy_values_name_the_key(changes, named):
    with pytest.raises(ValueError) as error:
        PrivacyConfig(**changes)
    assert named in str(error.value)
    with pytest.raises(ValueError) as error:  # the run-config checks the same
        RunConfig.of(**changes)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"strategy": "fedavg", "anchor_dp": "local"}, "anchor-dp='local'"),
        ({"strategy": "fedadam", "anchor_init": "federated"}, "anchor-init='federated'"),
        ({"strategy": "fedprox", "dp_sgd": True}, "dp-sgd=True"),
    ],
)
def test_privacy_keys_that_need_another_strategy_are_rejected(changes, named):
    with pytest.raises(ValueError, match=named):
        RunConfig.of(**changes)


def test_weighted_kmeans_centroid_is_the_weighted_mean():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 100.0], [101.0, 100.0]])
    weights = np.array([3.0, 1.0, 1.0, 4.0])
    centroids = kmeans_anchors(embeddings=points, num_anchors=2, seed=0, sample_weight=weights)
    centroids = centroids[np.argsort(centroids[:, 0])]
    expected = [np.average(points[:2], axis=0, weights=weights[:2])]
    expected.append(np.average(points[2:], axis=0, weights=weights[2:]))
    np.testing.assert_allclose(centroids, np.array(expected), atol=1e-5)


def clustered_clients(num_clients=6, num_centers=5, width=8, seed=0):
    """Clients each holding points around a random subset of well-separated centers."""
    rng = np.random.default_rng(seed)
    centers = 10.0 * rng.standard_normal((num_centers, width))
    clients = []
    for _ in range(num_clients):
        chosen = rng.choice(num_centers, size=3, replace=False)
        points = [
            centers[c] + 0.1 * rng.standard_normal((int(rng.integers(50, 200)), width))
            for c in chosen
        ]
        clients.append(np.concatenate(points))
    return centers, clients


def centroid_error(found, centers):
    """Largest distance from a true center to its nearest found centroid."""
    distances = np.linalg.norm(centers[:, None, :] - found[None, :, :], axis=2)
    return float(distances.min(axis=1).max())


@pytest.mark.parametrize("noise_multiplier", [0.0, 0.0005])
def test_federated_kmeans_recovers_separated_clusters(noise_multiplier):
    centers, clients = clustered_clients()
    rng = np.random.default_rng(5)
    centroid_sets, fraction_sets = [], []
    for index, points in enumerate(clients):
        centroids, fractions = local_centroids(embeddings=points, num_clusters=5, seed=index)
        assert fractions.sum() == pytest.approx(1.0) and centroids.shape == (5, 8)
        if noise_multiplier:
            centroids, fractions = release_centroids(
                centroids,
                fractions,
                clip=100.0,
                noise_multiplier=noise_multiplier,
                replace_one=True,
                rng=rng,
            )
        centroid_sets.append(centroids)
        fraction_sets.append(fractions)
    found = federated_kmeans(
        centroid_sets=centroid_sets, fraction_sets=fraction_sets, num_anchors=5, seed=0
    )
    # Points scatter 0.1 per axis around centers ~10 apart; clip 100 leaves them unclipped;
    # the noise (0.07 per axis at sigma 0.0005) moves a centroid by ~0.2.
    assert centroid_error(found, centers) < 0.5


def test_federated_kmeans_needs_enough_centroids():
    with pytest.raises(ValueError, match="num-anchors=4 exceeds the 2 centroids"):
        federated_kmeans(
            centroid_sets=[np.zeros((2, 3))], fraction_sets=[np.ones(2) / 2], num_anchors=4, seed=0
        )


def test_importing_opacus_through_fedaso_leaves_the_root_logger_alone():
    # Opacus calls logging.basicConfig at import; a root handler would print every Flower
    # log line twice. Checked in a fresh process, where Opacus is not imported yet.
    # Both processes start at once (each spends seconds importing torch), then are read.
    through_fedaso, bare = (
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for code in (
            "import logging; from fedaso.privacy import PrivacyAccount; PrivacyAccount(); "
            "import sys; print('opacus' in sys.modules, len(logging.getLogger().handlers))",
            "import logging, opacus; print(len(logging.getLogger().handlers))",
        )
    )
    out, bare_out = (process.communicate(timeout=300)[0] for process in (through_fedaso, bare))
    assert through_fedaso.returncode == bare.returncode == 0
    assert out.split() == ["True", "0"]
    assert bare_out.strip() == "1"  # what the context manager undoes


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (16, 32)])
def test_honest_local_releases_stay_under_the_servers_norm_bound(shape):
    # The server drops a local-DP anchor report longer than this bound as a lie: an honest
    # one (any change, clipped, plus the calibrated noise) must never be that long.
    rng = np.random.default_rng(0)
    clip, sigma, size = 2.0, 1.0, int(np.prod(shape))
    bound = local_release_norm_bound(clip=clip, noise_multiplier=sigma, size=size)
    changes = (100 * rng.standard_normal(shape) for _ in range(2000))
    norms = [
        np.linalg.norm(local_release(change, clip=clip, noise_multiplier=sigma, rng=rng))
        for change in changes
    ]
    assert max(norms) < bound
    if size >= 512:  # and at anchor-set sizes it is tight: the noise alone reaches most of it
        assert np.median(norms) > 0.6 * bound
