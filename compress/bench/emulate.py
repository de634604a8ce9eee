"""`compress emulate`: run an Arm board's export bundle on an emulated arm64 Debian, so its parity comes from
LiteRT's Arm kernels (XNNPACK's NEON / dot-product paths) instead of the x86 ones every host figure uses.

How (no binfmt_misc, no chroot, no arm64 code run at build time):

1. The root: `mmdebstrap --variant=extract` unpacks Debian bookworm's arm64 python3.11 and its dependencies
   (no maintainer scripts run), then the aarch64 wheels of numpy and ai-edge-litert (this host's versions, so
   only the kernels differ from the x86 figures) are downloaded from PyPI with pip and unzipped into its
   dist-packages. It is built in a staging folder, smoke-tested under QEMU, given a manifest (sha256 of every
   file) and only then renamed into the cache (~/.cache/facecompress/emulate/<key>); a half-built root is never
   used, and a root whose files no longer match its manifest is refused with the fix.
2. The run: `qemu-aarch64-static -cpu <board_cpu> -L ROOT ROOT/usr/bin/python3.11 -I run_on_board.py` on a
   copy of the bundle; board_cpu comes from the target file (Cortex-A72 on a Pi 4: no dot product; Cortex-A76
   on a Pi 5: dot product), so XNNPACK picks the kernels that board would pick.
3. The runner's JSON is marked as emulated: its parity is the Arm kernels' parity; its timing is QEMU's
   (translated code on this host), meaningless for the board.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from ..artifacts import folder_lock, host_description, write_json
from ..errors import UserError
from ..targets import Target, list_targets, load_target

ENV_DIR = "COMPRESS_EMULATE_DIR"
ENV_MIRROR = "COMPRESS_DEBIAN_MIRROR"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "bookworm"  # Raspberry Pi OS bookworm = Debian 12
ARCH = "arm64"
ROOT_PACKAGES = ("python3.11", "libstdc++6", "libgcc-s1")  # python3.11 pulls in its stdlib and libc
PYTHON = "usr/bin/python3.11"
SITE = "usr/lib/python3/dist-packages"  # on python3.11's default path, so `python -I` still sees it
# The runtime wheels: the versions this host runs, so an emulated and an x86 figure differ only in the kernels.
WHEELS = ("numpy", "ai-edge-litert")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
                   "manylinux_2_28_aarch64")
ROOT_FORMAT = "compress.emulate-root/1"
MANIFEST = "manifest.json"
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")
EMULATED_STATUS = "emulated arm64 (QEMU): parity from the Arm kernels, timing not meaningful"
# The runner's own timing protocol would take minutes under QEMU for a number that means nothing: one warm-up
# and three timed calls keep the record complete (compress report needs a median) at almost no cost.
RUNNER_TIMING = ("--warmup", "1", "--min-runs", "3", "--seconds", "0.001", "--max-seconds", "5")
RUN_TIMEOUT_S = 3600.0
THREADS = 1  # LiteRT threads in the guest: QEMU's threads are this host's, which other work shares
Log = Callable[[str], None]
# AT_HWCAP bit i -> the name Linux prints in /proc/cpuinfo's Features line (arch/arm64/kernel/cpuinfo.c order).
HWCAP_NAMES = ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
               "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
               "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg")
# MIDR_EL1 (implementer, variant, part, revision) of QEMU's CPU models (QEMU 7.2, target/arm/cpu64.c): what the
# kernel of such a board prints in /proc/cpuinfo, which cpuinfo (XNNPACK's CPU detection) reads to name the core.
QEMU_MIDR = {"cortex-a35": (0x41, 0x0, 0xd04, 0), "cortex-a53": (0x41, 0x0, 0xd03, 4),
             "cortex-a57": (0x41, 0x1, 0xd07, 0), "cortex-a72": (0x41, 0x0, 0xd08, 3),
             "cortex-a76": (0x41, 0x4, 0xd0b, 1), "neoverse-n1": (0x41, 0x4, 0xd0c, 1)}


# ---------------------------------------------------------------- tools and places
def cache_root() -> Path:
    """Where emulated roots live: $COMPRESS_EMULATE_DIR, else ~/.cache/facecompress/emulate."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facecompress" / "emulate"


def find_qemu() -> str:
    """The QEMU user-mode emulator for aarch64, or a UserError with the fix."""
    for name in QEMU_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise UserError("QEMU's aarch64 user-mode emulator (qemu-aarch64-static) is not on PATH: install it "
                    "(Debian/Ubuntu: sudo apt-get install qemu-user-static)")


def find_root_builder() -> str:
    found = shutil.which("mmdebstrap")
    if not found:
        raise UserError("mmdebstrap (builds the arm64 Debian root) is not on PATH: install it "
                        "(Debian/Ubuntu: sudo apt-get install mmdebstrap)")
    return found


def qemu_version(qemu: str) -> str:
    r = subprocess.run([qemu, "--version"], capture_output=True, text=True)
    return (r.stdout.splitlines() or ["unknown"])[0].strip()


def wheel_pins() -> dict[str, str]:
    """{distribution: version} of the runtime wheels, as installed on this host."""
    out = {}
    for dist in WHEELS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError as e:
            raise UserError(f"{dist} is not installed in this environment, so its version for the emulated board "
                            f"is unknown: run `make install`") from e
    return out


@dataclass(frozen=True)
class RootSpec:
    """What an emulated root holds; its key names the cache folder."""

    suite: str = SUITE
    arch: str = ARCH
    packages: tuple[str, ...] = ROOT_PACKAGES
    wheels: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        text = json.dumps([ROOT_FORMAT, self.suite, self.arch, self.packages, sorted(self.wheels.items())])
        return f"{self.suite}-{self.arch}-" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        wheels = ", ".join(f"{k} {v}" for k, v in sorted(self.wheels.items()))
        return f"Debian {self.suite} {self.arch} ({', '.join(self.packages)}) + PyPI aarch64 wheels {wheels}"


# ---------------------------------------------------------------- manifest: the cache's integrity check
def _root_files(root: Path) -> list[Path]:
    """Regular files and links under root (dev/ holds device nodes mmdebstrap made; they are not ours)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in ("dev", "proc", "sys", "tmp")]
        dirnames.sort()
        for n in sorted(filenames):
            p = Path(dirpath) / n
            if p.is_symlink() or p.is_file():
                out.append(p)
    return out


def _file_entry(p: Path) -> str:
    if p.is_symlink():
        return "link:" + os.readlink(p)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_table(root: Path) -> dict[str, str]:
    """{relative path: sha256 or 'link:TARGET'} of everything in an emulated root."""
    return {str(p.relative_to(root)): _file_entry(p) for p in _root_files(root)}


def check_root(folder: Path) -> dict[str, Any]:
    """The manifest of a cached root, after checking every file against it; a UserError with the fix if not."""
    fix = f"delete it (rm -rf {folder}) or run `compress emulate` with --rebuild"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise UserError(f"the emulated arm64 root in {folder} has no readable {MANIFEST} (damaged cache): "
                        f"{fix}") from None
    if manifest.get("format") != ROOT_FORMAT:
        raise UserError(f"{folder}/{MANIFEST} is not a {ROOT_FORMAT} manifest (damaged cache): {fix}")
    want, got = manifest["files"], file_table(folder / "root")
    changed = sorted(k for k in want if got.get(k) != want[k]) + sorted(set(got) - set(want))
    if changed:
        raise UserError(f"the emulated arm64 root in {folder} is damaged ({len(changed)} file(s) missing, changed "
                        f"or added, e.g. {changed[0]}): {fix}")
    return manifest


# ---------------------------------------------------------------- building the root
def _run(cmd: list[str], what: str, fix: str, timeout: float = 1800.0) -> str:
    """Run a build step; a failure is one line with its last output line and the fix."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} took over {timeout:.0f} s: {fix}") from None
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()
        last = next((ln for ln in reversed(lines) if ln.strip().startswith(("E:", "ERROR"))), lines[-1])
        raise UserError(f"{what} failed (exit {r.returncode}: {last.strip()}): {fix}")
    return r.stdout


def mirrors() -> list[str]:
    """The apt sources of the root: $COMPRESS_DEBIAN_MIRROR (a Debian mirror URL) or deb.debian.org, with
    bookworm-updates and the security archive, as a Raspberry Pi OS board has them."""
    base = os.environ.get(ENV_MIRROR, MIRROR).rstrip("/")
    security = SECURITY_MIRROR if ENV_MIRROR not in os.environ else f"{base}-security"
    return [f"deb {base} {SUITE} main", f"deb {base} {SUITE}-updates main",
            f"deb {security} {SUITE}-security main"]


def extract_debian(builder: str, spec: RootSpec, dest: Path) -> None:
    """Debian's arm64 packages unpacked into dest; no maintainer script runs, so no arm64 code runs."""
    cmd = [builder, "--variant=extract", f"--architectures={spec.arch}", f"--include={','.join(spec.packages)}",
           "--quiet", spec.suite, str(dest), *mirrors()]
    if os.geteuid() == 0:
        cmd.insert(1, "--mode=root")
    _run(cmd, f"mmdebstrap (Debian {spec.suite} {spec.arch} root)",
         f"check that the Debian mirror is reachable ({mirrors()[0].split()[1]}; set ${ENV_MIRROR} to another) "
         f"and that mmdebstrap can run here (as root, or with unprivileged user namespaces)")


def download_wheels(spec: RootSpec, dest: Path) -> list[Path]:
    """The aarch64 cp311 wheels of the runtime and its dependencies, from the package index pip is set up for."""
    dest.mkdir(parents=True, exist_ok=True)
    plats = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    pins = [f"{k}=={v}" for k, v in sorted(spec.wheels.items())]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", *plats, "-d", str(dest), *pins],
         f"pip download of the aarch64 wheels ({', '.join(pins)})",
         "check that PyPI (or the index pip is configured for: PIP_INDEX_URL) is reachable from here")
    return sorted(dest.glob("*.whl"))


def unpack_wheel(wheel: Path, site: Path) -> None:
    """A wheel is a zip laid out as site-packages; refuse members that would land outside `site`."""
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            target = (site / name).resolve()
            if not target.is_relative_to(site.resolve()):
                raise UserError(f"{wheel.name} has a member outside its install folder ({name}); not installed")
        z.extractall(site)
        for info in z.infolist():  # keep the executable bit of the few files that have it
            mode = info.external_attr >> 16
            if mode & 0o111:
                os.chmod(site / info.filename, mode & 0o777)


PROBE = r"""
import ctypes, json, platform, sys
import numpy
from ai_edge_litert import interpreter
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
from importlib import metadata
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "numpy": numpy.__version__, "ai-edge-litert": metadata.version("ai-edge-litert"),
                  "hwcap": int(libc.getauxval(16)), "os": platform.freedesktop_os_release().get("PRETTY_NAME")}))
"""


def probe(qemu: str, root: Path, cpu: str) -> dict[str, Any]:
    """What the emulated board reports: machine, Python, numpy, LiteRT, the CPU features (AT_HWCAP) QEMU gives
    the guest for `cpu`."""
    out = _run(guest_command(qemu, root, cpu, ["-c", PROBE]), f"the emulated root's smoke test (-cpu {cpu})",
               f"rebuild the root: `compress emulate --rebuild` (cache in {cache_root()})", timeout=600.0)
    info = json.loads(out.strip().splitlines()[-1])
    info["cpu_features"] = [n for bit, n in enumerate(HWCAP_NAMES) if info["hwcap"] >> bit & 1]
    return info


def proc_cpuinfo(cpu: str, features: list[str], cores: int) -> str:
    """/proc/cpuinfo as the arm64 kernel prints it for `cores` cores of `cpu` with these hwcaps."""
    imp, var, part, rev = QEMU_MIDR[cpu]
    one = (f"BogoMIPS\t: 108.00\nFeatures\t: {' '.join(features)}\nCPU implementer\t: {imp:#x}\n"
           f"CPU architecture: 8\nCPU variant\t: {var:#x}\nCPU part\t: {part:#05x}\nCPU revision\t: {rev}\n\n")
    return "".join(f"processor\t: {i}\n{one}" for i in range(cores))


def board_view(root: Path, dest: Path, cpu: str, features: list[str], cores: int) -> Path:
    """The guest's file system for one run: the cached root (linked, never written), plus the /proc/cpuinfo and
    /sys CPU lists the board's kernel would show. QEMU user mode passes the host's own through otherwise, and
    LiteRT's XNNPACK (cpuinfo) crashes the guest when /proc/cpuinfo describes an x86 CPU."""
    dest.mkdir()
    for top in root.iterdir():
        if top.name not in ("dev", "proc", "sys", "tmp", "run"):
            (dest / top.name).symlink_to(top)
    (dest / "proc").mkdir()
    (dest / "proc" / "cpuinfo").write_text(proc_cpuinfo(cpu, features, cores))
    cpus = dest / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text(f"0-{cores - 1}\n")
    return dest


def guest_command(qemu: str, root: Path, cpu: str, args: list[str], view: Path | None = None) -> list[str]:
    """The emulated board's `python3 -I ARGS`: -L makes the guest's /usr, /lib and /etc those of the root (or of
    `view`, a board_view of it); any other path is the host's."""
    pycache = root.parent / "pycache"  # bytecode goes beside the root (outside its manifest), never into it
    return [qemu, "-cpu", cpu, "-L", str(view or root), str(root / PYTHON), "-I", "-X", f"pycache_prefix={pycache}",
            *args]


def build_root(spec: RootSpec, folder: Path, qemu: str, builder: str, log: Log = print) -> dict[str, Any]:
    """Build the root into `.<key>.partial` beside `folder`, smoke-test it, seal its manifest, rename it in."""
    stage = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    t0 = time.perf_counter()
    log(f"building the emulated arm64 root ({spec.describe()}) in {folder} ...")
    extract_debian(builder, spec, stage / "root")
    t_debian = time.perf_counter() - t0
    wheels = download_wheels(spec, stage / "wheels")
    site = stage / "root" / SITE
    site.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        unpack_wheel(w, site)
    info = probe(qemu, stage / "root", "cortex-a72")  # the baseline Armv8.0 core: every board runs this
    got = {"machine": info["machine"], **{k: info[k] for k in spec.wheels}}
    want = {"machine": "aarch64", **spec.wheels}
    if got != want:
        raise UserError(f"the new emulated root reports {got}, expected {want}: report this as a bug")
    manifest = {"format": ROOT_FORMAT, "key": folder.name, "spec": spec.describe(), "suite": spec.suite,
                "arch": spec.arch, "packages": list(spec.packages), "mirrors": mirrors(),
                "wheels": sorted(w.name for w in wheels), "python": info["python"], "os": info["os"],
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_s": {"debian": round(t_debian, 1), "total": round(time.perf_counter() - t0, 1)},
                "files": file_table(stage / "root")}
    shutil.rmtree(stage / "wheels")
    write_json(stage / MANIFEST, manifest)
    os.replace(stage, folder)
    log(f"built in {manifest['build_s']['total']:.0f} s ({len(manifest['files'])} files)")
    return manifest


def ensure_root(spec: RootSpec, rebuild: bool = False, log: Log = print) -> tuple[Path, dict[str, Any]]:
    """The cached root for `spec` (checked against its manifest), built first when absent or --rebuild."""
    qemu = find_qemu()
    folder = cache_root() / spec.key()
    if folder.is_dir() and not rebuild:
        return folder / "root", check_root(folder)
    builder = find_root_builder()
    with folder_lock(folder):  # a second `compress emulate` waits for nothing: it fails with one line
        if folder.exists():
            old = folder.parent / f".{folder.name}.old"
            os.replace(folder, old)  # the damaged or replaced root, removed once the new one is in place
        manifest = build_root(spec, folder, qemu, builder, log)
        shutil.rmtree(folder.parent / f".{folder.name}.old", ignore_errors=True)
    return folder / "root", manifest


# ---------------------------------------------------------------- the bundle
BUNDLE_CONFIG, BUNDLE_RUNNER = "bundle.json", "run_on_board.py"


def emulated_targets() -> list[str]:
    return [t.name for t in list_targets() if t.board_cpu]


def bundle_target(cfg: dict[str, Any], where: str) -> Target:
    """The bundle's target, which must name an Arm CPU QEMU emulates and run LiteRT (the CPU runtime)."""
    try:
        target = load_target(cfg["target"])
    except (UserError, KeyError):
        raise UserError(f"{where}: bundle.json names target {cfg.get('target')!r}, which is not in targets/; "
                        f"emulate a bundle for one of: {', '.join(emulated_targets())}") from None
    if target.board_cpu and target.board_cpu not in QEMU_MIDR:
        raise UserError(f"{target.path}: board_cpu {target.board_cpu!r} is not one compress emulate knows; use one "
                        f"of {', '.join(QEMU_MIDR)}")
    if not target.board_cpu or target.runtime != "tflite":
        raise UserError(f"{where} is a bundle for {target.name} ({target.runtime}), which has no emulated Arm CPU "
                        f"(no board_cpu in its target file): `compress emulate` runs bundles for "
                        f"{', '.join(emulated_targets())}; run this one on its board")
    return target


def open_bundle(path: Path, work: Path) -> Path:
    """A copy of the bundle (folder or .tar.gz) in `work`, so the runner's output never lands in the user's."""
    if not path.exists():
        raise UserError(f"{path} not found: pass an export folder written by `compress export --bundle` or its "
                        f".tar.gz")
    if path.is_dir():
        dest = work / path.name
        shutil.copytree(path, dest, symlinks=False)
    else:
        try:
            with tarfile.open(path, "r:gz") as tf:
                tf.extractall(work, filter="data")  # refuses absolute paths, '..' and links out of `work`
        except (tarfile.TarError, OSError) as e:
            raise UserError(f"{path} is not a readable bundle .tar.gz ({e}): export it again with --bundle") from None
        tops = [p for p in work.iterdir()]
        dest = tops[0] if len(tops) == 1 and tops[0].is_dir() else work
    if not (dest / BUNDLE_CONFIG).is_file() or not (dest / BUNDLE_RUNNER).is_file():
        raise UserError(f"{path} has no {BUNDLE_CONFIG} and {BUNDLE_RUNNER}: it is not an export bundle; export "
                        f"with `compress export --target raspberry-pi-5 --bundle`")
    return dest


def read_bundle_config(folder: Path, where: str) -> dict[str, Any]:
    try:
        return json.loads((folder / BUNDLE_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: {BUNDLE_CONFIG} is not readable JSON ({e}): export the bundle again") from None


# ---------------------------------------------------------------- running it
@dataclass
class Board:
    """One emulated board for one bundle: its copy of the bundle, target, QEMU, root and file-system view."""

    work: Path
    folder: Path
    target: Target
    qemu: str
    root: Path
    manifest: dict[str, Any]
    info: dict[str, Any]
    view: Path

    @classmethod
    def open(cls, bundle: Path, work: Path, rebuild: bool = False, log: Log = print) -> "Board":
        """Bundle checks first (bad input before any work), then QEMU, then the cached (or new) root."""
        folder = open_bundle(bundle, work)
        target = bundle_target(read_bundle_config(folder, str(bundle)), str(bundle))
        qemu = find_qemu()
        root, manifest = ensure_root(RootSpec(wheels=wheel_pins()), rebuild=rebuild, log=log)
        info = probe(qemu, root, target.board_cpu)
        cores = target.hardware.cores if target.hardware and target.hardware.cores else 4
        view = board_view(root, work / "board", target.board_cpu, info["cpu_features"], cores)
        return cls(work, folder, target, qemu, root, manifest, info, view)

    def python(self, args: list[str], timeout: float, what: str) -> None:
        """`python3 -I ARGS` on the board, with a minimal environment: the root's bin folders on PATH, so a
        helper the runner calls (dpkg-query, nvpmodel) is the board's or absent, never this host's."""
        env = {"PATH": f"{self.root}/usr/bin:{self.root}/bin", "LANG": "C.UTF-8", "HOME": str(self.work)}
        cmd = guest_command(self.qemu, self.root, self.target.board_cpu, args, self.view)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise UserError(f"{what} took over {timeout:.0f} s on the emulated board; pass a larger --timeout") from None
        if r.returncode != 0:
            last = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
            raise UserError(f"{what} failed on the emulated board (exit {r.returncode}): {last}")


def mark_emulated(rec: dict[str, Any], target: Target, info: dict[str, Any], qemu: str, root_manifest: dict[str, Any],
                  seconds: float) -> dict[str, Any]:
    """The runner's record, labelled so that nothing reads it as a board measurement."""
    cpu = target.board_cpu
    board = dict(rec.get("board") or {})
    board.update(model=f"no board: QEMU-emulated {cpu} (target {target.name})", cpu=f"{cpu} (emulated by QEMU)",
                 kernel=f"this host's ({board.get('kernel')}): QEMU user mode passes system calls through",
                 on_target=None, emulated=True)
    rec.update(
        measured=EMULATED_STATUS,
        measured_on=f"QEMU user-mode -cpu {cpu}, {info['os']} arm64, Python {info['python']}, on {host_description()}",
        board=board,
        emulated={"status": EMULATED_STATUS, "cpu": cpu, "cpu_features": info["cpu_features"],
                  "dot_product": "asimddp" in info["cpu_features"], "qemu": qemu_version(qemu),
                  "machine": info["machine"], "os": info["os"], "python": info["python"],
                  "numpy": info["numpy"], "runtime": f"ai-edge-litert {info['ai-edge-litert']}",
                  "root": {"key": root_manifest["key"], "spec": root_manifest["spec"],
                           "wheels": root_manifest["wheels"], "built": root_manifest["built"]},
                  "host": host_description(), "wall_s": round(seconds, 1),
                  "timing": "median_ms is QEMU's translated code on the host, not the board's speed: "
                            "do not compare it with anything"},
    )
    return rec


def emulate_bundle(bundle: Path, out: Path, overwrite: bool = False, rebuild: bool = False, threads: int = THREADS,
                   timeout: float = RUN_TIMEOUT_S, log: Log = print) -> dict[str, Any]:
    """Run `bundle`'s run_on_board.py on the emulated board of its target; write the marked record to `out`."""
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it or choose another --json")
    if threads < 0 or not timeout > 0:
        raise UserError(f"need --threads >= 0 and --timeout > 0, got {threads} and {timeout}")
    with tempfile.TemporaryDirectory(prefix="compress-emulate-") as tmp:
        b = Board.open(bundle, Path(tmp), rebuild, log)
        result = b.folder / "emulated-result.json"
        log(f"running {bundle.name}'s run_on_board.py on an emulated {b.target.board_cpu} ({b.info['os']}, "
            f"Python {b.info['python']}, ai-edge-litert {b.info['ai-edge-litert']}) ...")
        t0 = time.perf_counter()
        b.python([str(b.folder / BUNDLE_RUNNER), "--out", str(result), "--threads", str(threads), *RUNNER_TIMING],
                 timeout, "run_on_board.py")
        rec = mark_emulated(json.loads(result.read_text()), b.target, b.info, b.qemu, b.manifest,
                            time.perf_counter() - t0)
    write_json(out, rec)
    return rec


def summary(rec: dict[str, Any]) -> str:
    p, e = rec.get("parity") or {}, rec["emulated"]
    par = (f"parity vs PyTorch float: cosine mean {p['cosine_mean']:.6f}, min {p['cosine_min']:.6f} over {p['n']} "
           f"faces" if "cosine_mean" in p else f"parity not measured ({p.get('why')})")
    return (f"{rec['model_file']} [{rec['target']} {rec['precision']}] {rec['runtime']} {rec['runtime_version']} on "
            f"{e['machine']} {e['cpu']} (dot product: {'yes' if e['dot_product'] else 'no'}): {par}; "
            f"{EMULATED_STATUS}; model sha256 {rec['model_sha256'][:12]}")


# ---------------------------------------------------------------- embeddings computed on the emulated board
EMBED_SCRIPT = r"""
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("run_on_board", sys.argv[1])
rob = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rob)
folder, faces, out = sys.argv[2], sys.argv[3], sys.argv[4]
cfg = rob.read_config(folder)
backend = rob.LiteRtBackend(folder + "/" + cfg["model_file"], int(sys.argv[5]))
images = np.load(faces)
np.save(out, np.concatenate([backend.run(rob.prepare(images[i:i + 1], cfg)) for i in range(len(images))]))
"""


def embed_on_board(bundle: Path, images: Any, threads: int = THREADS, timeout: float = RUN_TIMEOUT_S) -> Any:
    """Embeddings [N, D] of uint8 faces [N, H, W, 3] computed by the bundle's model and its runner's own input
    preparation (run_on_board.py's prepare + LiteRtBackend), inside the emulated board of its target."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="compress-emulate-") as tmp:
        b, work = Board.open(bundle, Path(tmp)), Path(tmp)
        (work / "embed.py").write_text(EMBED_SCRIPT)
        np.save(work / "faces.npy", np.ascontiguousarray(images, np.uint8))
        b.python([str(work / "embed.py"), str(b.folder / BUNDLE_RUNNER), str(b.folder), str(work / "faces.npy"),
                  str(work / "emb.npy"), str(threads)], timeout, "embedding")
        return np.load(work / "emb.npy")
