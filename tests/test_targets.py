import numpy as np
import pytest

from napari_segkit.click_targets import targets_from_clicks
from napari_segkit.targets import (
    BOUNDARY,
    IGNORE_INDEX,
    INTERIOR,
    class_weights,
    instance_targets,
    semantic_targets,
    sparse_targets,
)


def test_instance_targets_hand_case():
    lab = np.zeros((7, 10), np.uint16)
    lab[1:6, 1:5] = 1
    lab[1:6, 5:9] = 2  # touching object
    t = instance_targets(lab)
    # outer ring of each object and the contact line are boundary
    assert t.classes[1, 2] == BOUNDARY and t.classes[3, 4] == BOUNDARY and t.classes[3, 5] == BOUNDARY
    assert t.classes[3, 2] == INTERIOR and t.classes[3, 7] == INTERIOR
    assert (t.classes[lab == 0] == 0).all()
    assert t.center.dtype == np.float32
    assert t.center.max() == pytest.approx(1.0)
    assert (t.center[lab == 0] == 0).all()
    assert t.center[3, 2] == 1.0 and t.center[1, 2] < 1.0
    assert t.center_mask.all()


def test_semantic_and_sparse():
    sem = np.array([[0, 1], [2, -1]])
    t = semantic_targets(sem, 3)
    assert t.classes.tolist() == [[0, 1], [2, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="classes"):
        semantic_targets(sem, 2)
    sp = np.array([[0, 1], [2, 0]], np.uint8)
    t = sparse_targets(sp)
    assert t.classes.tolist() == [[IGNORE_INDEX, 0], [INTERIOR, IGNORE_INDEX]]
    assert t.center_mask.tolist() == [[False, True], [False, False]]


def test_class_weights_favour_rare_class():
    c = np.zeros((20, 20), np.int8)
    c[5:15, 5:15] = 1
    c[5, 5:15] = 2
    c[0, 0] = IGNORE_INDEX
    w = class_weights([c], 3)
    assert w.dtype == np.float32
    assert w[2] > w[1] > w[0]


def test_targets_from_clicks_real_sample():
    pytest.importorskip("napari_segkit.annotations")
    from napari_segkit._sample import sample_path
    from napari_segkit.io import read_image, read_points_csv

    image = read_image(sample_path("fluo_256.tif"))
    coords, feats = read_points_csv(sample_path("fluo_256_points.csv"))
    t = targets_from_clicks(image, coords, list(feats["class"]))
    assert t.classes.shape == image.shape[:2]
    known = t.classes >= 0
    assert 0.3 < known.mean() < 1.0  # some uncertain pixels are ignored
    obj = coords[np.asarray(feats["class"]) == "nucleus"].round().astype(int)
    assert (t.classes[obj[:, 0], obj[:, 1]] >= 1).mean() > 0.9


def test_click_masks_from_scratch_teach_their_edges():
    """Without a guide, the pixels just outside each click-grown mask are taught (no
    ignored ring by default); ring=2 ignores them again."""
    from scipy import ndimage as ndi

    image = np.zeros((64, 64), np.float32)
    yy, xx = np.mgrid[:64, :64]
    centres = [(16, 16), (16, 46), (46, 30)]
    for r, c in centres:
        image[(yy - r) ** 2 + (xx - c) ** 2 <= 49] = 1.0
    clicks = np.array(centres, float)
    for ring, edge_class in ((None, 0), (2, -1)):
        t = targets_from_clicks(image, clicks, ring=ring)
        fg = t.instances > 0
        assert len(np.unique(t.instances[fg])) == 3
        edge = ndi.binary_dilation(fg) & ~fg
        assert (t.classes[edge] == edge_class).all()


def _guide_case():
    guide = np.zeros((40, 60), np.int32)
    guide[5:15, 5:35] = 1   # two touching nuclei the model merged
    guide[25:35, 5:15] = 2  # a nucleus found and clicked
    guide[25:35, 45:55] = 3  # something nobody clicked
    click_masks = np.zeros_like(guide)
    click_masks[25:31, 25:31] = 7  # a nucleus the model missed
    clicks = np.array([[10, 10], [10, 30], [30, 10], [28, 28]], float)
    return guide, click_masks, clicks


def test_click_guided_instances_split_merges_add_misses_and_drop_unclicked():
    from napari_segkit.click_targets import click_guided_instances

    guide, click_masks, clicks = _guide_case()
    g = click_guided_instances(guide, click_masks, clicks)
    out = g.labels
    assert out[10, 8] == 1 and out[10, 32] == 2  # the merge is split between its clicks
    assert (out[5:15, 5:35] > 0).all() and set(np.unique(out[5:15, 5:35])) == {1, 2}
    assert (out[guide == 2] == 3).all()  # the model's own mask kept
    assert (out[25:31, 25:31] == 4).all() and g.grown[28, 28] and not g.grown[10, 10]
    # fully annotated image: the object nobody clicked is background, not unknown
    assert (out[guide == 3] == 0).all() and not g.unknown.any()


def test_click_guided_instances_region_keep_and_background_clicks():
    from napari_segkit.click_targets import click_guided_instances

    guide, click_masks, clicks = _guide_case()
    region = np.zeros(guide.shape, bool)
    region[:, :40] = True  # object 3 lies outside the annotated region: unknown
    g = click_guided_instances(guide, click_masks, clicks, region=region)
    assert g.unknown[30, 50] and (g.labels[guide == 3] == 0).all()
    assert g.unknown[2, 50] and not g.unknown[2, 20]  # background outside: unknown
    # a background click makes its object background even outside the region
    g = click_guided_instances(guide, click_masks, clicks, region=region,
                               background=np.array([[30.0, 50.0]]))
    assert not g.unknown[30, 50] and g.labels[30, 50] == 0
    # corrections keep what nobody clicked
    g = click_guided_instances(guide, click_masks, clicks, unclicked="keep")
    assert (g.labels[guide == 3] == 5).all()
    with pytest.raises(ValueError, match="unclicked"):
        click_guided_instances(guide, click_masks, clicks, unclicked="maybe")


def test_missed_nucleus_takes_the_models_faint_blob_when_plausible():
    from napari_segkit.click_targets import click_guided_instances

    guide, click_masks, clicks = _guide_case()
    fg = np.zeros(guide.shape, np.float32)
    fg[guide > 0] = 0.9
    fg[24:34, 22:34] = 0.35  # the model half saw the missed nucleus, larger than the click mask
    g = click_guided_instances(guide, click_masks, clicks, foreground=fg)
    assert (g.labels[24:34, 22:34] == 4).all()
    fg[:, :] = 0.35  # a blob of the whole image is implausible: the click mask instead
    fg[guide > 0] = 0.9
    g = click_guided_instances(guide, click_masks, clicks, foreground=fg)
    assert (g.labels == 4).sum() == 36


def test_region_mask_forms():
    from napari_segkit.click_targets import region_mask

    assert region_mask(None, (4, 5)).all()
    box = region_mask((1, 1, 3, 4), (4, 5))
    assert box.sum() == 6 and box[1, 1] and not box[3, 4]
    poly = region_mask(np.array([[0, 0], [0, 4], [3, 4], [3, 0]]), (4, 5))
    assert poly[1, 2] and poly.sum() >= 12
    with pytest.raises(ValueError, match="region"):
        region_mask(np.zeros((2, 2)), (4, 5))
    with pytest.raises(ValueError, match="row1 > row0"):
        region_mask((3, 1, 1, 4), (4, 5))


def test_targets_from_clicks_with_guide_and_region():

    guide, click_masks, clicks = _guide_case()
    image = (guide > 0).astype(np.float32) * 100
    image[25:31, 25:31] = 100
    region = (0, 0, 40, 40)
    t = targets_from_clicks(image, clicks, guide=guide, region=region)
    assert t.classes[30, 50] == -1 and t.classes[2, 50] == -1  # outside the region
    assert t.classes[2, 20] == 0 and t.classes[10, 10] >= 1
    t = targets_from_clicks(image, clicks, guide=guide)
    assert t.classes[30, 50] == 0  # unclicked object in the annotated image: background


def test_click_guided_split_follows_the_neck_between_unequal_nuclei():
    from napari_segkit.click_targets import click_guided_instances

    yy, xx = np.mgrid[:60, :90]
    big = (yy - 30) ** 2 + (xx - 30) ** 2 <= 20**2  # radius 20, centre x=30
    small = (yy - 30) ** 2 + (xx - 60) ** 2 <= 12**2  # radius 12, centre x=60: neck x~48
    guide = (big | small).astype(np.int32)
    clicks = np.array([[30, 30], [30, 60]], float)
    out = click_guided_instances(guide, np.zeros_like(guide), clicks).labels
    # nearest-click (Voronoi) would cut at x=45, inside the big nucleus; the cut is at
    # the neck, so each nucleus keeps (almost) all of its own pixels
    assert (out[big & ~small] == 1).mean() > 0.97
    assert (out[small & ~big] == 2).mean() > 0.97
    assert (out[guide > 0] > 0).all()


def test_self_training_targets_keep_the_model_where_the_clicks_change_nothing():
    from napari_segkit.click_targets import targets_from_clicks

    guide, click_masks, clicks = _guide_case()
    probs = np.zeros((4, *guide.shape), np.float32)
    probs[0] = 0.9
    probs[1][guide > 0] = 0.8
    probs[0][guide > 0] = 0.1
    probs[2][guide > 0] = 0.1
    probs[3] = 0.25  # the model's own centre map
    probs[:3, 0:3, 40:60] = 0.4  # an unsure corner: max probability below the confidence
    image = np.zeros(guide.shape, np.float32)
    plain = targets_from_clicks(image, clicks, guide=guide, guide_probabilities=probs)
    own = targets_from_clicks(image, clicks, guide=guide, guide_probabilities=probs, distill=True)
    # the clicked, unchanged nucleus (guide 2): the model's own classes and centre map
    inner = (slice(27, 33), slice(7, 13))
    assert (own.classes[inner] == 1).all() and np.allclose(own.center[inner], 0.25)
    assert plain.center[30, 10] > 0.5  # the distance-based centre instead
    # where the clicks change the model (the split merge, the unclicked object) both agree
    assert own.classes[10, 20] == plain.classes[10, 20]
    assert (own.classes[guide == 3] == plain.classes[guide == 3]).all()
    assert (own.classes[0:3, 40:60] == IGNORE_INDEX).all()  # unsure: not trained


def test_new_model_centre_targets_peak_at_the_clicks():
    """From scratch, each click-grown object's centre target is 1 at its click and falls
    with the distance from it, so two touching nuclei keep two separate seeds even where
    the grown masks' outlines are rough; ``click_centres=False`` gives the distance map of
    the masks."""
    from scipy import ndimage as ndi

    from napari_segkit.targets import center_map

    yy, xx = np.mgrid[:48, :64]
    image = np.full((48, 64), 0.1, np.float32)
    for r, c in ((24, 22), (24, 38)):  # two touching nuclei
        image[(yy - r) ** 2 + (xx - c) ** 2 <= 81] = 0.9
    image += np.random.default_rng(0).normal(0, 0.03, image.shape).astype(np.float32)
    clicks = np.array([[22.0, 20.0], [25.0, 40.0]])  # near, not at, their centres
    t = targets_from_clicks(image, clicks, click_centres=True)
    ids = t.instances[clicks[:, 0].astype(int), clicks[:, 1].astype(int)]
    assert sorted(ids) == [1, 2]
    for (r, c), k in zip(clicks.astype(int), ids, strict=True):
        obj = t.instances == k
        assert t.center[r, c] == pytest.approx(1.0) and t.center[r, c] == t.center[obj].max()
        assert t.center[obj].min() < 0.2
    seeds, n = ndi.label(t.center > 0.5)
    assert n == 2 and {seeds[r, c] for r, c in clicks.astype(int)} == {1, 2}
    plain = targets_from_clicks(image, clicks)
    np.testing.assert_array_equal(plain.center, center_map(plain.instances))
