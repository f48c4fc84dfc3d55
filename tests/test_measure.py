import numpy as np
import pandas as pd
import pytest

from napari_segkit.measure import (
    count_by_class,
    missed_objects,
    object_table,
    summary_table,
    unit_name,
)


def two_objects():
    labels = np.zeros((20, 30), dtype=np.uint16)
    labels[2:6, 3:7] = 1  # 4x4 = 16 px, centroid (3.5, 4.5)
    labels[10:20, 10:20] = 5  # 10x10 = 100 px, centroid (14.5, 14.5)
    return labels


def test_basic_columns_centroid_area_intensity():
    labels = two_objects()
    image = np.zeros(labels.shape, dtype=np.uint16)
    image[labels == 1] = 10
    image[10:15, 10:20] = 30  # half of object 5 at 30, half at 0
    t = object_table(labels, image)
    assert list(t.columns) == [
        "label",
        "centroid-0",
        "centroid-1",
        "area_px",
        "equivalent_diameter_px",
        "mean_intensity",
        "integrated_intensity",
    ]
    assert t["label"].tolist() == [1, 5]
    np.testing.assert_allclose(t[["centroid-0", "centroid-1"]], [[3.5, 4.5], [14.5, 14.5]])
    assert t["area_px"].tolist() == [16, 100]
    np.testing.assert_allclose(t["mean_intensity"], [10, 15])
    np.testing.assert_allclose(t["integrated_intensity"], [160, 1500])
    np.testing.assert_allclose(
        t["equivalent_diameter_px"], 2 * np.sqrt(np.array([16, 100]) / np.pi)
    )


def test_physical_units_with_scale():
    labels = two_objects()
    t = object_table(labels, scale=(0.5, 0.25), units="µm", translate=(10, 0))
    assert "area_um2" in t and "centroid_y_um" in t and "centroid_x_um" in t
    np.testing.assert_allclose(t["area_um2"], [16 * 0.125, 100 * 0.125])
    np.testing.assert_allclose(t["centroid_y_um"], [3.5 * 0.5 + 10, 14.5 * 0.5 + 10])
    np.testing.assert_allclose(t["centroid_x_um"], [4.5 * 0.25, 14.5 * 0.25])
    np.testing.assert_allclose(t["equivalent_diameter_um"], 2 * np.sqrt(t["area_um2"] / np.pi))
    # scale without units: generic names; napari's default "pixel" unit means no unit
    t = object_table(labels, scale=(2, 2), units=("pixel", "pixel"))
    np.testing.assert_allclose(t["area_scaled"], [64, 400])
    assert unit_name("micron") == unit_name("micrometer") == unit_name("um") == "um"
    assert unit_name("nm") == "nm"
    with pytest.raises(ValueError, match="different units"):
        unit_name(("um", "nm"))


def test_rgb_image_uses_mean_of_channels():
    labels = two_objects()
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[labels == 1] = (30, 60, 90)
    t = object_table(labels, rgb)
    assert t.loc[t.label == 1, "mean_intensity"].item() == pytest.approx(60)
    with pytest.raises(ValueError, match="does not match labels shape"):
        object_table(labels, np.zeros((5, 5)))


def test_3d_volume_in_um3():
    labels = np.zeros((4, 10, 10), dtype=np.uint16)
    labels[1:3, 2:5, 2:6] = 3  # 2*3*4 = 24 voxels
    t = object_table(labels, scale=(2.0, 0.5, 0.5), units="um")
    assert t["volume_vox"].tolist() == [24]
    assert t["volume_um3"].tolist() == [pytest.approx(24 * 0.5)]
    assert {"centroid-2", "centroid_z_um"} <= set(t.columns)
    assert t["centroid_z_um"].item() == pytest.approx(1.5 * 2.0)


def test_gt_status_columns_and_missed():
    gt = np.zeros((20, 30), dtype=np.uint16)
    gt[2:6, 3:7] = 1
    gt[10:20, 10:20] = 2
    gt[0:4, 20:24] = 3  # missed
    pred = two_objects()  # 1 matches gt 1, 5 matches gt 2
    pred[15:19, 25:29] = 7  # false positive
    t = object_table(pred, gt=gt)
    assert t["status"].tolist() == ["matched", "matched", "false positive"]
    assert t["matched_gt"].tolist() == [1, 2, 0]
    np.testing.assert_allclose(t["best_iou"], [1.0, 1.0, 0.0])
    m = missed_objects(gt, pred)
    assert m["label"].tolist() == [3]
    assert m["status"].tolist() == ["missed"]
    assert list(m.columns) == list(t.columns)
    # the two tables stack into one review table
    assert len(pd.concat([t, m], ignore_index=True)) == 4


def test_empty_labels_give_empty_table_with_columns():
    labels = np.zeros((10, 10), dtype=np.uint16)
    t = object_table(labels, np.ones((10, 10)), scale=(1, 1), units="um", gt=labels)
    assert len(t) == 0
    assert list(t.columns)[0] == "label"
    assert {"area_um2", "mean_intensity", "status", "centroid_x_um"} <= set(t.columns)
    assert len(missed_objects(labels, labels)) == 0
    s = summary_table(labels)
    assert s["n_objects"].item() == 0


def test_summary_and_count_by_class():
    labels = two_objects()
    s = summary_table(labels, scale=(0.5, 0.5), units="um", gt=labels)
    assert s["n_objects"].item() == 2
    assert s["total_area_px"].item() == 116
    assert s["mean_area_um2"].item() == pytest.approx(58 * 0.25)
    assert s["f1"].item() == 1.0
    semantic = np.zeros_like(labels)
    semantic[labels == 1] = 2
    semantic[labels == 5] = 1
    semantic[10, 10] = 2  # minority pixel does not change the object's class
    c = count_by_class(labels, semantic, ["background", "nucleus", "mitotic"])
    assert c.set_index("class_name")["count"].to_dict() == {
        "background": 0,
        "nucleus": 1,
        "mitotic": 1,
    }


def test_real_sample_table():
    from napari_segkit._sample import sample_path

    tifffile = pytest.importorskip("tifffile")
    labels = tifffile.imread(sample_path("fluo_256_labels.tif"))
    image = tifffile.imread(sample_path("fluo_256.tif"))
    t = object_table(labels, image, scale=(0.3, 0.3), units="um")
    assert len(t) == len(np.unique(labels)) - 1
    assert (t["area_um2"] > 0).all() and t["label"].is_unique
