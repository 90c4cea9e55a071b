"""The benchmark protocols (configs/_base_/datasets/) and every method x
benchmark config under configs/, trained on tiny synthetic files of each
benchmark's real format that this file writes (nothing is downloaded): CIFAR-10
python batches (pickled as Python 2 and as Python 3 write them) and binary
batches, MNIST idx, HashNet / DeepHash-pytorch image lists (one-hot and
multi-hot), and TEXMEX .fvecs / .ivecs with a ground-truth file."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

import hashlab
from conftest import SOURCE_DIR

CONFIGS = os.path.join(SOURCE_DIR, "configs")


def cfg(path):
    return os.path.join(CONFIGS, path)


def pattern_images(labels, shape, seed):
    """uint8 images [n, *shape]: a pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    p = np.arange(size)
    base = np.where(((p[None, :] * 7 + labels[:, None] * 13) % 5) == 0, 200.0, 40.0)
    return np.clip(base + rng.normal(0, 30, size=base.shape), 0, 255).astype(np.uint8).reshape(
        len(labels), *shape)


# ----------------------------------------------------------------- writers
def write_cifar_python(path, images, labels, style):
    """A CIFAR-10 python batch: {"batch_label", "labels", "data", "filenames"}.
    style "py3-2" / "py3-4": Python 3's pickle at protocol 2 / 4 (numpy array);
    "py2": the bytes Python 2's cPickle writes (protocol 2, str = BINSTRING)."""
    data = images.reshape(len(images), 3072)
    if style != "py2":
        d = {"batch_label": "training batch", "labels": [int(x) for x in labels],
             "data": data, "filenames": [f"img{i}.png" for i in range(len(labels))]}
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=int(style[-1]))
        return
    raw = data.tobytes()
    out = bytearray(b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
                    b"cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01")
    out += b"M" + struct.pack("<H", len(labels)) + b"M\x00\x0c\x86"
    out += (b"cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xff"
            b"J\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<I", len(raw)) + raw + b"tbU\x06labels]q\x07(")
    for x in labels:
        out += b"K" + bytes([int(x)])
    out += b"eU\x0bbatch_labelU\x0etraining batchu."
    with open(path, "wb") as f:
        f.write(bytes(out))


def write_cifar_binary(path, images, labels):
    with open(path, "wb") as f:
        for img, lab in zip(images, labels):
            f.write(bytes([int(lab)]) + img.tobytes())


def write_idx_gz(path, array):
    """uint8 idx (magic 0x0000080D with D dimensions, big-endian sizes), gzip."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", s) for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_vecs(path, x, dtype):
    x = np.asarray(x, dtype=dtype)
    with open(path, "wb") as f:
        for row in x:
            f.write(struct.pack("<i", len(row)) + row.tobytes())


def write_ppm(path, img):
    """img uint8 [H, W, 3] as a binary PPM (P6), which OpenCV decodes."""
    h, w, _ = img.shape
    with open(path, "wb") as f:
        f.write(f"P6 {w} {h} 255\n".encode() + img.tobytes())


def true_neighbors(queries, base, k):
    d = ((queries[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


# --------------------------------------------------------------- the files
@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """data_batch_1..5 and test_batch (20 images each, 2 per class) as python
    batches (three pickle spellings) and binary batches, under one root."""
    root = tmp_path_factory.mktemp("cifar10")
    (root / "cifar-10-batches-py").mkdir()
    (root / "cifar-10-batches-bin").mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    styles = ["py2", "py3-2", "py3-4", "py2", "py3-2", "py3-4"]
    for b, (name, style) in enumerate(zip(names, styles)):
        labels = np.tile(np.arange(10), 2)
        images = pattern_images(labels, (3, 32, 32), seed=b)
        write_cifar_python(root / "cifar-10-batches-py" / name, images, labels, style)
        write_cifar_binary(root / "cifar-10-batches-bin" / f"{name}.bin", images, labels)
    return root


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    for name, n, seed in (("train", 600, 1), ("t10k", 100, 2)):
        labels = np.arange(n) % 10
        write_idx_gz(root / f"{name}-images-idx3-ubyte.gz", pattern_images(labels, (28, 28), seed))
        write_idx_gz(root / f"{name}-labels-idx1-ubyte.gz", labels)
    return root


def image_list_root(root, classes, multi_label):
    """database.txt (40 images), test.txt (10), train.txt (20 of the database
    images) in the HashNet / DeepHash-pytorch format, PPM images under images/."""
    (root / "images").mkdir()
    lines = []
    for i in range(50):
        c = i % classes
        onehot = np.zeros(classes, dtype=int)
        onehot[c] = 1
        if multi_label and i % 3 == 0:
            onehot[(c + 1) % classes] = 1
        img = pattern_images(np.array([c]), (8, 8, 3), seed=i)[0]
        write_ppm(root / "images" / f"{i}.ppm", img)
        lines.append(f"images/{i}.ppm " + " ".join(map(str, onehot)))
    (root / "database.txt").write_text("\n".join(lines[:40]) + "\n")
    (root / "test.txt").write_text("\n".join(lines[40:]) + "\n")
    (root / "train.txt").write_text("\n".join(lines[:40:2]) + "\n")
    return root


@pytest.fixture(scope="module")
def image_lists(tmp_path_factory):
    return {"imagenet100": image_list_root(tmp_path_factory.mktemp("imagenet"), 5, False),
            "nuswide21": image_list_root(tmp_path_factory.mktemp("nuswide"), 4, True),
            "coco": image_list_root(tmp_path_factory.mktemp("coco"), 6, True)}


VEC_FILES = {"sift1m": ("sift_base", "sift_query", "sift_learn", "sift_groundtruth"),
             "gist1m": ("gist_base", "gist_query", "gist_learn", "gist_groundtruth"),
             "deep1m": ("deep1M_base", "deep1M_query", "deep1M_learn", "deep1M_groundtruth")}


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """Per benchmark: 300 base, 10 query and 200 learning vectors (16-d) and the
    100 true neighbours of each query, in TEXMEX's file names."""
    out = {}
    for seed, (bench, (base, query, learn, gt)) in enumerate(VEC_FILES.items()):
        root = tmp_path_factory.mktemp(bench)
        rng = np.random.default_rng(seed)
        centres = rng.normal(0, 3, size=(8, 16))
        draw = lambda n: (centres[rng.integers(0, 8, n)] + rng.normal(0, 1, (n, 16))).astype(
            np.float32)
        xb, xq, xl = draw(300), draw(10), draw(200)
        write_vecs(root / f"{base}.fvecs", xb, np.float32)
        write_vecs(root / f"{query}.fvecs", xq, np.float32)
        write_vecs(root / f"{learn}.fvecs", xl, np.float32)
        write_vecs(root / f"{gt}.ivecs", true_neighbors(xq, xb, 100), np.int32)
        out[bench] = (root, xb, xq)
    return out


def train(tmp_path, config, overrides):
    run = hashlab.train(cfg(config), overrides=["threads=1", *overrides],
                        run_dir=str(tmp_path / "run"))
    assert run.status == "finished", run.status
    return run


def idx(t):
    return set(t.tolist())


# ------------------------------------------------------------- the splits
def test_cifar10_splits_follow_deephash_pytorch(cifar, tmp_path):
    # 2 queries and 3 training images per class (cifar10-2: 10), out of 12.
    for name, db_rule, train_per_class in (("cifar10", "rest_without_train", 3),
                                           ("cifar10_1", "rest", 3), ("cifar10_2", "train", 10)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"_base_: {cfg('_base_/datasets/' + name + '.yaml')}\nname: t\n"
                          "method: lsh\nmodel: {bits: 8}\ndevice: cpu\ntrain: {batch_size: 8}\n")
        run = hashlab.train(str(config), overrides=["threads=1", f"data.root={cifar}",
                                                    "data.queries_per_class=2",
                                                    f"data.train_per_class={train_per_class}"],
                            run_dir=str(tmp_path / name))
        s = run.split()
        q, db, tr = idx(s.query), idx(s.database), idx(s.train)
        assert len(q) == 20 and not (q & db) and not (q & tr)
        assert np.bincount(s.labels[s.query].numpy(), minlength=10).tolist() == [2] * 10
        if db_rule == "rest_without_train":
            assert len(tr) == 30 and len(db) == 120 - 20 - 30 and not (tr & db)
        elif db_rule == "rest":
            assert len(tr) == 30 and len(db) == 100 and tr <= db
        else:
            assert len(tr) == 100 and db == tr
        assert run.final["num_database"] == len(db) and "map_all" in run.final


def test_cifar_python_and_binary_batches_read_the_same(cifar, tmp_path):
    runs = []
    for kind in ("py", "bin"):
        ext = ".bin" if kind == "bin" else ""
        files = ",".join(f"cifar-10-batches-{kind}/data_batch_{i}{ext}" for i in range(1, 6))
        runs.append(train(tmp_path / kind, "lsh/lsh_cifar10_gist.yaml",
                          [f"data.root={cifar}", f"data.files=[{files},"
                           f"cifar-10-batches-{kind}/test_batch{ext}]",
                           "data.queries_per_class=2", "model.bits=16"]))
    a, b = (r.split() for r in runs)
    assert a.features.shape == (120, 320)  # GIST-320: 8 + 8 + 4 orientations x 16 blocks
    assert np.array_equal(a.features.numpy(), b.features.numpy())
    assert np.array_equal(a.labels.numpy(), b.labels.numpy())
    assert np.array_equal(runs[0].database_codes.data, runs[1].database_codes.data)


def test_mnist_protocol(mnist, tmp_path):
    run = train(tmp_path, "itq/itq_mnist.yaml",
                [f"data.root={mnist}", "data.queries_per_class=5", "model.bits=8"])
    s = run.split()
    assert len(s.query) == 50 and len(s.database) == 650 and len(s.train) == 650
    assert s.features.shape == (700, 1, 28, 28)


@pytest.mark.parametrize("bench", ["imagenet100", "nuswide21", "coco"])
def test_image_list_protocols_take_the_split_from_the_lists(image_lists, bench, tmp_path):
    root = image_lists[bench]
    config = tmp_path / "c.yaml"
    config.write_text(f"_base_: {cfg('_base_/datasets/' + bench + '.yaml')}\nname: t\n"
                      "method: lsh\nmodel: {bits: 8}\ndevice: cpu\ntrain: {batch_size: 8}\n")
    run = hashlab.train(str(config), overrides=["threads=1", f"data.root={root}",
                                                "data.resize=[8]", "data.crop=[8]"],
                        run_dir=str(tmp_path / "run"))
    s = run.split()
    # Pool order: database.txt (40), test.txt (10), train.txt (20).
    assert s.query.tolist() == list(range(40, 50))
    assert s.database.tolist() == list(range(40))
    assert s.train.tolist() == list(range(50, 70))
    assert (s.labels.dim() == 2) and run.final["num_queries"] == 10
    key = "map_1000" if bench == "imagenet100" else "map_5000"
    assert key in run.final


@pytest.mark.parametrize("bench", ["sift1m", "gist1m", "deep1m"])
def test_vector_benchmarks_use_the_ground_truth_file(vectors, bench, tmp_path):
    root, xb, xq = vectors[bench]
    over = [f"data.root={root}", "model.bits=16", "data.num_train=100"]
    run = train(tmp_path / "gt", f"itq/itq_{bench}.yaml", over)
    s = run.split()
    assert s.query.tolist() == list(range(300, 310))
    assert s.database.tolist() == list(range(300))
    assert len(s.train) == 100 and min(s.train.tolist()) >= 310
    assert np.array_equal(s.true_neighbors.numpy(), true_neighbors(xq, xb, 100))
    # The same run's codes evaluated with the neighbours computed from the
    # features (no ground-truth file) give the same metrics ...
    computed = run.evaluate(["data.ground_truth=''"])
    assert {k: v for k, v in computed.items() if "seconds" not in k} == \
           {k: v for k, v in run.final.items() if k in computed and "seconds" not in k}
    # ... and a different ground truth gives different ones: the file is used.
    wrong = tmp_path / "wrong.ivecs"
    write_vecs(wrong, np.roll(true_neighbors(xq, xb, 100), 1, axis=0), np.int32)  # others' lists
    other = run.evaluate([f"data.ground_truth={wrong}"])
    assert other["sigah_map"] != run.final["sigah_map"]


def test_ground_truth_errors_name_the_file_and_the_problem(vectors, tmp_path):
    root, xb, xq = vectors["sift1m"]
    base = [f"data.root={root}", "model.bits=8", "data.num_train=100"]
    bad_id = tmp_path / "bad_id.ivecs"
    gt = true_neighbors(xq, xb, 100)
    gt[3, 7] = 300
    write_vecs(bad_id, gt, np.int32)
    few = tmp_path / "few.ivecs"
    write_vecs(few, true_neighbors(xq[:4], xb, 100), np.int32)
    short = tmp_path / "short.ivecs"
    write_vecs(short, true_neighbors(xq, xb, 10), np.int32)
    cases = [
        ([f"data.ground_truth={bad_id}"], [str(bad_id), "query 3", "database item 300", "300 items"]),
        ([f"data.ground_truth={few}"], [str(few), "for 4 queries", "hold 10"]),
        ([f"data.ground_truth={short}"], ["eval.recall_k = 100", "gives 10"]),
        ([f"data.ground_truth={tmp_path / 'missing.ivecs'}"], ["missing.ivecs"]),
        (["data.files=[sift_base.fvecs, sift_query.fvecs]"], ["3 roles for 2 files"]),
        (["data.roles=[database, query, test]"], ["unknown role 'test'"]),
        (["data.roles=[database, train, train]"], ["no file has the role query"]),
        (["data.num_queries=5"], ["data.num_queries", "validation"]),
        (["data.database=train"], ["data.database", "data.roles"]),
        (["data.protocol=label"], ["ground truth is for the Euclidean protocol"]),
    ]
    for i, (over, words) in enumerate(cases):
        with pytest.raises(hashlab.Error) as e:
            hashlab.train(cfg("lsh/lsh_sift1m.yaml"), overrides=["threads=1", *base, *over],
                          run_dir=str(tmp_path / f"r{i}"))
        for w in words:
            assert w in str(e.value), (over, str(e.value))
    # A malformed data file is named too.
    (tmp_path / "trunc").mkdir()
    for f in os.listdir(root):
        data = (root / f).read_bytes()
        (tmp_path / "trunc" / f).write_bytes(data[:-3] if f.startswith("sift_base") else data)
    with pytest.raises(hashlab.Error, match="sift_base.fvecs"):
        hashlab.train(cfg("lsh/lsh_sift1m.yaml"),
                      overrides=["threads=1", f"data.root={tmp_path / 'trunc'}", "model.bits=8"],
                      run_dir=str(tmp_path / "trunc_run"))


def test_cifar_pickle_errors_name_the_file(cifar, tmp_path):
    src = cifar / "cifar-10-batches-py" / "data_batch_1"
    raw = src.read_bytes()
    cases = {
        "truncated": (raw[: len(raw) // 2], ["truncated", "not a readable pickle"]),
        "cifar100": (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "fine_labels": [1],
                                   "coarse_labels": [0]}, protocol=2), ["format cifar100"]),
        "floats": (pickle.dumps({"data": np.zeros((1, 3072), np.float32), "labels": [1]},
                                protocol=2), ["uint8"]),
        "label": (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10]},
                               protocol=2), ["label 0 is 10"]),
        "code": (b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.", ["a pickled object"]),
    }
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(hashlab.Error) as e:
            hashlab.train(cfg("lsh/lsh_cifar10_gist.yaml"),
                          overrides=["threads=1", f"data.files=[{tmp_path / name}]",
                                     "data.queries_per_class=0", "model.bits=8"],
                          run_dir=str(tmp_path / f"r_{name}"))
        msg = str(e.value)
        assert str(tmp_path / name) in msg and any(w in msg for w in words), (name, msg)


# ---------------------------------------------- every method x dataset config
SHRINK = {
    "hashnet": ["train.iterations=2", "train.batch_size=8", "model.bits=8"],
    "itq": ["model.bits=8"], "lsh": ["model.bits=8"], "pcah": ["model.bits=8"],
    "sh": ["model.bits=8"],
    "sigah": ["model.bits=8", "train.iterations=2", "train.batch_size=20"],
    "auto_jacobin": ["model.bits=4", "train.iterations=1", "train.batch_size=50",
                     "data.num_train=100", "model.tangents.neighbours=30"],
    "deepquan": ["model.bits=16", "model.pretrain_steps=1", "train.iterations=3",
                 "train.batch_size=64", "optim.stages=[{until: 1, type: adam, lr: 0.001}]"],
    "wsl": ["model.bits=4", "model.max_rounds=1", "model.mma_maxeval=3", "model.max_train=200"],
}


def benchmark_configs():
    """Every config under configs/<method>/ that is not on Fashion-MNIST pixels."""
    out = []
    for method in sorted(os.listdir(CONFIGS)):
        if method.startswith("_"):
            continue
        for f in sorted(os.listdir(os.path.join(CONFIGS, method))):
            if f.endswith(".yaml") and ("_fmnist" not in f or f.endswith("_fmnist_gist.yaml")):
                out.append(f"{method}/{f}")
    return out


def test_every_benchmark_config_is_tested():
    names = benchmark_configs()
    assert len(names) >= 40
    assert {n.split("/")[0] for n in names} >= set(SHRINK)


@pytest.mark.parametrize("config", benchmark_configs())
def test_benchmark_config_trains_on_tiny_files(config, cifar, mnist, image_lists, vectors,
                                               data_dir, tmp_path):
    method, name = config.split("/")
    bench = name[len(method) + 1:-5] if name.startswith(method + "_") else None
    over = list(SHRINK[method])
    if bench in ("cifar10", "cifar10_1", "cifar10_2", "cifar10_gist"):
        over += [f"data.root={cifar}", "data.queries_per_class=2"]
        over += ["data.train_per_class=10" if bench == "cifar10_2" else "data.train_per_class=3"]
        if bench == "cifar10_gist":
            over.remove("data.train_per_class=3")
    elif bench == "mnist":
        over += [f"data.root={mnist}", "data.queries_per_class=5"]
    elif bench in image_lists:
        over += [f"data.root={image_lists[bench]}", "data.resize=[8]", "data.crop=[8]"]
    elif bench in vectors:
        over += [f"data.root={vectors[bench][0]}"]
        if "data.num_train=100" not in over:
            over += ["data.num_train=100"]
    elif bench == "fmnist_gist":
        over += [f"data.files=[{data_dir / 'images.idx'}]",
                 f"data.labels=[{data_dir / 'labels.idx'}]"]
        over += (["data.num_queries=10"] if method == "auto_jacobin" else
                 ["data.queries_per_class=5"])
    else:
        pytest.fail(f"{config}: no tiny data for '{bench}'")
    if method == "hashnet" and bench != "fmnist_gist":  # AlexNet, without its weights
        over += ["model.backbone.pretrained=''", "model.backbone.input_size=64"]
    run = train(tmp_path, config, over)
    assert run.final["num_queries"] > 0
