"""Tests for derain_utils.synth.data: data_root precedence, the registry, and checksummed fetch.

Downloads are tested against a real HTTP server on 127.0.0.1 serving files made here.
"""
from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from derain_utils.synth import backgrounds, data

ORIGINALS_HEADER = "set\tshared_file\trepo\tcommit\tpath\tsha256\tbytes\n"
TOY_SETS = {"toy": {"what": "toy set", "source": "o/r", "licence": "toy licence", "citation": "Toy 2024"}}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------- data_root
def test_data_root_precedence(tmp_path, monkeypatch):
    env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
    env_dir.mkdir()
    arg_dir.mkdir()
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    assert data.data_root() is None
    monkeypatch.setenv("DERAIN_DATA", "")
    assert data.data_root() is None  # empty counts as unset
    monkeypatch.setenv("DERAIN_DATA", str(env_dir))
    assert data.data_root() == env_dir.resolve()
    assert data.data_root(arg_dir) == arg_dir.resolve()  # explicit beats the environment
    assert data.data_root(str(arg_dir)) == arg_dir.resolve()


def test_data_root_missing_paths_are_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("DERAIN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*nowhere"):
        data.data_root(tmp_path / "nowhere")
    monkeypatch.setenv("DERAIN_DATA", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=r"DERAIN_DATA=.*gone"):
        data.data_root()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="file.txt"):
        data.data_root(tmp_path / "file.txt")


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DERAIN_CACHE", str(tmp_path / "env_cache"))
    assert data.cache_root() == tmp_path / "env_cache"
    assert data.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("DERAIN_CACHE")
    assert "slacking-off" in str(data.cache_root())


# --------------------------------------------------------------------------- registry
def write_originals(path: Path, rows: list[tuple]) -> Path:
    path.write_text(ORIGINALS_HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_build_registry_tiny(tmp_path):
    h1, h2 = sha(b"one"), sha(b"two")
    src = write_originals(tmp_path / "ORIGINALS.tsv", [
        ("toy", "z_img.jpg", "own/repo", "abc123", "dir (1)/z img.png", h1, 3),
        ("toy", "input/7.png", "own/repo", "abc123", "a/7.png", h2.upper(), 3),
    ])
    out = tmp_path / "reg" / "registry.tsv"
    reg = data.build_registry(src, out, sets=TOY_SETS)
    assert list(reg.columns) == list(data.REGISTRY_COLUMNS)
    assert reg["file"].tolist() == ["input/7.png", "z_img.png"]  # sorted; original suffix, sub-folder kept
    assert reg.loc[1, "url"] == "https://raw.githubusercontent.com/own/repo/abc123/dir%20%281%29/z%20img.png"
    assert reg.loc[0, "sha256"] == h2  # normalised to lower case
    assert "licence" not in reg.columns  # per-set facts live in sets.tsv, once per set
    back = data.load_registry(out)
    assert back["file"].tolist() == reg["file"].tolist() and back["url"].tolist() == reg["url"].tolist()
    sets = pd.read_csv(tmp_path / "reg" / "sets.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(sets.columns) == list(data.SETS_COLUMNS)
    assert sets.to_dict("records") == [{"set": "toy", "files": "2", "bytes": "6", "what": "toy set", "source": "o/r",
                                        "licence": "toy licence", "citation": "Toy 2024"}]
    data.build_registry(src, None, sets=TOY_SETS, sets_tsv=tmp_path / "only_sets.tsv")
    assert (tmp_path / "only_sets.tsv").read_bytes() == (tmp_path / "reg" / "sets.tsv").read_bytes()


@pytest.mark.parametrize(
    "row, match",
    [
        (("toy", "a.png", "o/r", "c", "p.png", "xyz", 3), "sha256"),
        (("toy", "a.png", "o/r", "c", "p.png", "0" * 64, 0), "bytes"),
        (("nope", "a.png", "o/r", "c", "p.png", "0" * 64, 3), "nope"),
        (("toy", "../a.png", "o/r", "c", "p.png", "0" * 64, 3), "relative"),
        (("toy", "a.png", "o/r", "", "p.png", "0" * 64, 3), "commit"),
    ],
)
def test_build_registry_rejects_bad_rows(tmp_path, row, match):
    src = write_originals(tmp_path / "o.tsv", [row])
    with pytest.raises(ValueError, match=match):
        data.build_registry(src, None, sets=TOY_SETS)


def test_build_registry_rejects_duplicates_and_missing_columns(tmp_path):
    dup = write_originals(tmp_path / "d.tsv", [("toy", "a.jpg", "o/r", "c", "x/a.png", "0" * 64, 1),
                                               ("toy", "a.jpg", "o/r", "c", "y/a.png", "1" * 64, 1)])
    with pytest.raises(ValueError, match="duplicate"):
        data.build_registry(dup, None, sets=TOY_SETS)
    (tmp_path / "m.tsv").write_text("set\tshared_file\n")
    with pytest.raises(ValueError, match="missing column"):
        data.build_registry(tmp_path / "m.tsv", None, sets=TOY_SETS)
    with pytest.raises(FileNotFoundError, match="absent.tsv"):
        data.build_registry(tmp_path / "absent.tsv")


def test_shipped_registry_is_well_formed(repo_root):
    reg = data.load_registry()
    assert list(reg.columns) == list(data.REGISTRY_COLUMNS) and len(reg) > 0
    assert reg["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(reg["set"]) <= set(data.SETS)
    assert not reg.duplicated(["set", "file"]).any()
    urls = [data.raw_url(r.repo, r.commit, r.path) for r in reg.itertuples()]
    assert reg["url"].tolist() == urls
    sets = pd.read_csv(data.SETS_PATH, sep="\t", keep_default_na=False)
    assert list(sets.columns) == list(data.SETS_COLUMNS)
    assert sets.astype(str).equals(data.sets_table(reg).astype(str)), "run build_registry again"
    assert set(sets["set"]) == set(reg["set"]) and (sets["licence"] != "").all() and (sets["citation"] != "").all()
    assert not any(p.suffix.lower() in {".png", ".jpg", ".jpeg"} for p in (repo_root / "data").rglob("*"))
    readme = (repo_root / "data" / "README.md").read_text()
    table = data.sets_table(reg)
    lines = readme.splitlines()
    for row in table.itertuples():  # the README table lists every set with its registry count
        assert any(ln.startswith(f"| `{row.set}` |") and ln.endswith(f"| {row.files} |") for ln in lines), row.set
    assert data.REGISTRY["file"].tolist() == reg["file"].tolist()  # lazy module attribute


@pytest.mark.shared_data
def test_shipped_registry_matches_originals(shared_data, tmp_path):
    rebuilt = data.build_registry([shared_data / "ORIGINALS.tsv", data.WEIGHTS_ORIGINALS_PATH], tmp_path / "r.tsv")
    assert (tmp_path / "r.tsv").read_bytes() == data.REGISTRY_PATH.read_bytes(), "run build_registry again"
    assert (tmp_path / "sets.tsv").read_bytes() == data.SETS_PATH.read_bytes(), "run build_registry again"
    assert len(rebuilt) == len(data.load_registry())
    # every image-set folder of the development data that has public originals is registered, and so is
    # every folder of published weights (checkpoints_prenet), byte for byte
    for row in rebuilt[rebuilt["set"].str.startswith("checkpoints_")].itertuples():
        assert data.sha256_file(shared_data / row.set / row.file) == row.sha256, row.file
    for folder in sorted(p for p in shared_data.iterdir() if (p / "PROVENANCE.md").is_file()):
        holds_images = any(f.suffix.lower() in backgrounds.IMAGE_EXTENSIONS for f in folder.rglob("*"))
        if holds_images and folder.name != "real_rain_nturain":  # frames come out of RAR archives: no single URL
            assert folder.name in set(rebuilt["set"]), folder.name


# --------------------------------------------------------------------------- fetch
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class LocalServer:
    """A real HTTP server on 127.0.0.1 (free port) serving `root`, in a thread."""

    def __init__(self, root: Path):
        self.root = root
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)
            self.running = False


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    srv = LocalServer(root)
    yield srv
    srv.stop()


def publish(srv: LocalServer, repo: str, commit: str, path: str, payload: bytes) -> None:
    target = srv.root / repo / commit / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)


def toy_registry(tmp_path: Path, rows: list[tuple]) -> pd.DataFrame:
    return data.build_registry(write_originals(tmp_path / "ORIGINALS.tsv", rows), None, sets=TOY_SETS)


def cached_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_fetch_downloads_verified_files(server, tmp_path):
    good, sub = b"\x89PNG fake image bytes", b"another file"
    publish(server, "own/repo", "c0ffee", "imgs (a)/x y.png", good)
    publish(server, "own/repo", "c0ffee", "t/16.png", sub)
    reg = toy_registry(tmp_path, [("toy", "x_y.jpg", "own/repo", "c0ffee", "imgs (a)/x y.png", sha(good), len(good)),
                                  ("toy", "target/16.png", "own/repo", "c0ffee", "t/16.png", sha(sub), len(sub))])
    cache = tmp_path / "cache"
    folder = data.fetch("toy", cache_dir=cache, base_url=server.url, registry=reg, progressbar=False)
    assert folder == cache / "toy"
    assert (folder / "x_y.png").read_bytes() == good
    assert (folder / "target" / "16.png").read_bytes() == sub
    assert cached_files(folder) == [folder / "target" / "16.png", folder / "x_y.png"]
    server.stop()  # verified files are reused without the network
    assert data.fetch("toy", cache_dir=cache, base_url=server.url, registry=reg, progressbar=False) == folder


def test_fetch_checksum_mismatch_keeps_nothing(server, tmp_path):
    publish(server, "own/repo", "c0ffee", "a.png", b"tampered bytes")
    reg = toy_registry(tmp_path, [("toy", "a.png", "own/repo", "c0ffee", "a.png", sha(b"original bytes"), 14)])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"checksum mismatch for toy/a\.png"):
        data.fetch("toy", cache_dir=cache, base_url=server.url, registry=reg, progressbar=False)
    assert cached_files(cache) == []  # no partial or corrupt file left behind


def test_fetch_replaces_corrupt_cached_file(server, tmp_path):
    payload = b"the real thing"
    publish(server, "own/repo", "c0ffee", "a.png", payload)
    reg = toy_registry(tmp_path, [("toy", "a.png", "own/repo", "c0ffee", "a.png", sha(payload), len(payload))])
    cache = tmp_path / "cache"
    (cache / "toy").mkdir(parents=True)
    (cache / "toy" / "a.png").write_bytes(b"half a downl")
    data.fetch("toy", cache_dir=cache, base_url=server.url, registry=reg, progressbar=False)
    assert (cache / "toy" / "a.png").read_bytes() == payload


def test_fetch_errors(server, tmp_path, monkeypatch):
    reg = toy_registry(tmp_path, [("toy", "a.png", "own/repo", "c0ffee", "missing.png", "0" * 64, 1)])
    with pytest.raises(ValueError, match=r"set_name='nope'.*\['toy'\]"):
        data.fetch("nope", cache_dir=tmp_path / "c", registry=reg)
    with pytest.raises(ConnectionError, match="missing.png"):  # HTTP 404
        data.fetch("toy", cache_dir=tmp_path / "c", base_url=server.url, registry=reg, progressbar=False)
    assert cached_files(tmp_path / "c") == []
    monkeypatch.setenv("DERAIN_CACHE", str(tmp_path / "envcache"))
    payload = b"ok"
    publish(server, "own/repo", "c0ffee", "ok.png", payload)
    reg = toy_registry(tmp_path, [("toy", "ok.png", "own/repo", "c0ffee", "ok.png", sha(payload), 2)])
    assert data.fetch("toy", base_url=server.url, registry=reg, progressbar=False) == tmp_path / "envcache" / "toy"


# --------------------------------------------------------------------------- fetch command
def two_set_registry(srv: LocalServer, tmp_path: Path) -> pd.DataFrame:
    files = {("toy", "x.jpg", "imgs/x.png"): b"toy image x", ("toy", "input/1.png", "in/1.png"): b"rainy one",
             ("toy2", "b.png", "b.png"): b"second set"}
    rows = []
    for (set_name, shared, path), payload in files.items():
        publish(srv, "own/repo", "c0ffee", path, payload)
        rows.append((set_name, shared, "own/repo", "c0ffee", path, sha(payload), len(payload)))
    sets = {**TOY_SETS, "toy2": {"what": "t2", "source": "o/r", "licence": "l2", "citation": "c2"}}
    return data.build_registry(write_originals(tmp_path / "O.tsv", rows), None, sets=sets)


def test_fetch_sets_lays_out_a_data_root(server, tmp_path):
    reg = two_set_registry(server, tmp_path)
    dest = tmp_path / "derain_data"
    got = data.fetch_sets(None, dest, server.url, registry=reg, progressbar=False)
    assert got == {"toy": dest / "toy", "toy2": dest / "toy2"}
    assert (dest / "toy" / "x.png").read_bytes() == b"toy image x"
    assert (dest / "toy" / "input" / "1.png").read_bytes() == b"rainy one"
    assert data.data_root(dest) == dest.resolve()  # usable as DERAIN_DATA
    server.stop()  # already verified: no network needed the second time
    assert data.fetch_sets(["toy2"], dest, server.url, registry=reg, progressbar=False) == {"toy2": dest / "toy2"}


def test_fetch_sets_refuses_to_mix_copies(server, tmp_path):
    reg = two_set_registry(server, tmp_path)
    dest = tmp_path / "dev"
    (dest / "toy").mkdir(parents=True)
    (dest / "toy" / "x.jpg").write_bytes(b"downscaled development copy")  # same stem as the original x.png
    with pytest.raises(ValueError, match=r"x\.jpg \(registered: x\.png\)"):
        data.fetch_sets(["toy"], dest, server.url, registry=reg, progressbar=False)
    assert not (dest / "toy" / "x.png").exists()
    with pytest.raises(ValueError, match=r"unknown set.*\['nope'\].*registered sets"):
        data.fetch_sets(["toy", "nope"], dest, server.url, registry=reg)


def test_main_fetch_and_offline(server, tmp_path, capsys):
    reg = two_set_registry(server, tmp_path)
    reg_path = tmp_path / "reg.tsv"
    reg.to_csv(reg_path, sep="\t", index=False)
    dest = tmp_path / "out"
    assert data.main(["fetch", "toy", "--dest", str(dest), "--base-url", server.url, "--registry", str(reg_path),
                      "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "toy: 2 verified files" in out and f"export DERAIN_DATA={dest}" in out
    assert (dest / "toy" / "x.png").is_file() and not (dest / "toy2").exists()
    port = server.httpd.server_address[1]
    server.stop()  # offline: nothing listens on the port any more
    rc = data.main(["fetch", "toy2", "--dest", str(dest), "--base-url", f"http://127.0.0.1:{port}",
                    "--registry", str(reg_path), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: could not download toy2/b.png") and "Offline?" in err
    assert "Traceback" not in err and not list((dest / "toy2").glob("*.png"))
    assert data.main(["fetch", "nope", "--registry", str(reg_path)]) == 2
    assert "unknown set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data.main([])  # a command is required


def test_main_fetch_bad_destinations_and_protocols_are_one_line(server, tmp_path, capsys, monkeypatch):
    # was: NotADirectoryError tracebacks for --dest or DERAIN_CACHE that is a file, and a bad protocol
    # headlined as a checksum mismatch
    reg = two_set_registry(server, tmp_path)
    reg_path = tmp_path / "reg.tsv"
    reg.to_csv(reg_path, sep="\t", index=False)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    common = ["--base-url", server.url, "--registry", str(reg_path), "--quiet"]
    assert data.main(["fetch", "toy", "--dest", str(a_file), *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{a_file} is a file" in err and "Traceback" not in err
    monkeypatch.setenv("DERAIN_CACHE", str(a_file))
    assert data.main(["fetch", "toy", *common]) == 2
    assert f"{a_file} is a file" in capsys.readouterr().err
    monkeypatch.delenv("DERAIN_CACHE")
    dest = tmp_path / "out"
    assert data.main(["fetch", "toy", "--dest", str(dest), "--base-url", "xyz://host", "--registry", str(reg_path),
                      "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "base_url 'xyz://host' must start with one of https://, http://" in err and "checksum" not in err
    assert not dest.exists()


def test_main_list(capsys):
    assert data.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in data.SETS) and "sets.tsv" in out
