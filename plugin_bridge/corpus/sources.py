"""Real recordings from Debian data packages: download, unpack, label by path, licence, reserved checks.

Labels come ONLY from ``models/training/label_rules.tsv`` (package, path regex, label; first match wins;
``SKIP`` excludes explicitly; unmatched files are left out).  Named groups ``(?P<gender>male|female)`` and
``(?P<language>..)`` in a rule's regex add that metadata.  Reserved evaluation sources (data_rules.md) are
refused here; they are only unpacked to fingerprint them for de-duplication.
"""
from __future__ import annotations

import csv
import fnmatch
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from plugin_bridge.errors import PluginBridgeError

AUDIO_EXT = (".ogg", ".wav", ".flac", ".mp3", ".opus")
REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL_RULES = REPO_ROOT / "models" / "training" / "label_rules.tsv"
LABELS_JSON = REPO_ROOT / "models" / "training" / "labels.json"


class CorpusError(PluginBridgeError):
    """The corpus cannot be built as asked (missing tool/package, bad option, reserved source)."""


class ReservedSourceError(CorpusError):
    """A reserved evaluation source was about to be used for training."""


# data_rules.md §1: evaluation-only sources.  Never train on these.
RESERVED_PACKAGES = {
    "redeclipse-data", "scorched3d-data", "supertuxkart-data",
    "timgm6mb-soundfont", "csound-soundfont", "freepats", "avldrums.lv2-soundfont",
    "klettres-data", "ktuberling-data", "hydrogen-drumkits-effects",
}
RESERVED_PREFIXES = ("asterisk-core-sounds-",)
# tuxpaint-stamps-default: only the spoken descriptions in these languages may be used for training
TUXPAINT = "tuxpaint-stamps-default"
TUXPAINT_TRAIN_LANGS = {"ro", "es", "ru", "bg", "fr", "el", "be"}
# packages with partial reservations: (package, regex on source path) that is reserved
RESERVED_PATHS = [
    ("lmms-common", r"samples/instruments/"),
    ("sonic-pi-samples", r"/(guit_|tabla_)[^/]*$"),
    ("hydrogen-drumkits", r"circAfrique"),
]
# reference packages fingerprinted for de-duplication (never trained on)
DEDUP_REFERENCE = ["redeclipse-data", "scorched3d-data", "supertuxkart-data", TUXPAINT]

ALLOWED_LICENCE = re.compile(r"(^|[^a-z])(gpl|lgpl|agpl|cc-by|cc0|mit|expat|bsd|apache|zlib|public[- ]domain|"
                             r"free ?art|isc|unlicense|cmu|festvox|wtfpl)", re.I)
FORBIDDEN_LICENCE = re.compile(r"(-nc\b|noncommercial|non-commercial|-nd\b|noderiv|unknown|gfdl|fdl-)", re.I)


# packages whose debian/copyright is not machine-readable: licence read by hand (reviewed)
PACKAGE_LICENCE_FALLBACK = {
    "wesnoth-1.16-data": "GPL-2+",   # "GNU General Public License version 2 or at your option any later version"
    "warmux-data": "GPL-2+",         # "either version 2 of the License, or (at your option) any later version"
    "wesnoth-1.16-music": "GPL-2+",  # "GNU General Public License version 2 or at your option any later version"
}


def licence_allowed(lic: str) -> bool:
    return bool(lic) and bool(ALLOWED_LICENCE.search(lic)) and not FORBIDDEN_LICENCE.search(lic)


def is_reserved(package: str, source_path: str = "", label: str | None = None, language: str | None = None) -> bool:
    if package in RESERVED_PACKAGES or package.startswith(RESERVED_PREFIXES):
        return True
    if package == TUXPAINT:
        return not (label == "speech" and language in TUXPAINT_TRAIN_LANGS)
    for pkg, rx in RESERVED_PATHS:
        if package == pkg and re.search(rx, source_path):
            return True
    return False


def check_not_reserved(package: str, source_path: str = "", label: str | None = None,
                       language: str | None = None) -> None:
    if is_reserved(package, source_path, label, language):
        raise ReservedSourceError(
            f"{package}:{source_path or '*'} is reserved for evaluation (shared/reference/data_rules.md) "
            "and must not be used for training")


# ----------------------------------------------------------------------------- label rules
@dataclass
class Rule:
    package: str
    regex: re.Pattern
    label: str
    line: int


def load_rules(path: Path = LABEL_RULES) -> list[Rule]:
    rules = []
    with open(path, encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if not row or row[0].startswith("#") or row[0] == "package":
                continue
            if len(row) < 3:
                raise CorpusError(f"{path}:{n}: expected 3 tab-separated columns")
            try:
                rx = re.compile(row[1])
            except re.error as exc:
                raise CorpusError(f"{path}:{n}: bad regex {row[1]!r}: {exc}") from None
            rules.append(Rule(row[0].strip(), rx, row[2].strip(), n))
    return rules


@dataclass
class Labelled:
    package: str
    path: Path            # file on disk
    source_path: str      # path inside the package (zip members as archive.zip:member)
    label: str
    gender: str | None = None
    language: str | None = None
    rule_line: int = 0


def label_for(rules: list[Rule], package: str, source_path: str):
    """First matching rule -> (label, groupdict, line) or None.  'SKIP' rules return None."""
    for r in rules:
        if r.package != package:
            continue
        m = r.regex.search(source_path)
        if m:
            if r.label.upper() == "SKIP":
                return None
            return r.label, {k: v for k, v in m.groupdict().items() if v}, r.line
    return None


def label_tree(rules: list[Rule], package: str, root: Path, for_training: bool = True) -> list[Labelled]:
    """Label every audio file under an unpacked package tree.  Reserved material is refused
    (``for_training``) — a rule that would train on it raises ReservedSourceError."""
    out = []
    if for_training and (package in RESERVED_PACKAGES or package.startswith(RESERVED_PREFIXES)):
        check_not_reserved(package)
    for path, sp in iter_audio(root):
        hit = label_for(rules, package, sp)
        if hit is None:
            continue
        label, gd, line = hit
        lang = gd.get("language")
        gender = gd.get("gender")
        if for_training:
            check_not_reserved(package, sp, label, lang)
        out.append(Labelled(package, path, sp, label, gender, lang, line))
    return out


def iter_audio(root: Path):
    """(file on disk, path inside package) for every audio file under an unpacked package tree."""
    root = Path(root)
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for fn in sorted(files):
            if not fn.lower().endswith(AUDIO_EXT):
                continue
            p = Path(dirpath) / fn
            if p.is_symlink():
                continue   # symlinked copies are duplicates by construction
            rel = p.relative_to(root).as_posix()
            yield p, _source_path(rel)


# unpacked archive members live under "zip/" -> report them as "<archive inside package>:<member>"
ARCHIVES = {
    "0ad-data": "usr/share/games/0ad/mods/public/public.zip",
    "ufoai-sound": "usr/share/games/ufoai/base/0snd.pk3",
    "openarena-data": "usr/share/games/openarena/baseoa/pak0.pk3",
    "warzone2100-data": "usr/share/games/warzone2100/base.wz",
}
_CURRENT_PKG: dict[str, str] = {}


def _source_path(rel: str) -> str:
    if rel.startswith("zip/"):
        return "zip:" + rel[4:]
    return rel


def display_source_path(package: str, sp: str) -> str:
    if sp.startswith("zip:"):
        return f"{ARCHIVES.get(package, 'archive')}:{sp[4:]}"
    return sp


# ----------------------------------------------------------------------------- package handling
def dpkg_version(pkg: str) -> str | None:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        return r.stdout.strip()
    return None


def deb_version(debs_dir: Path, pkg: str) -> str | None:
    for f in sorted(Path(debs_dir).glob(f"{pkg}_*.deb")):
        return f.name.split("_")[1].replace("%3a", ":")
    return dpkg_version(pkg)


def download_and_unpack(pkg: str, debs_dir: Path, x_dir: Path, log=print) -> Path:
    """apt-get download + unpack audio (never installs).  Idempotent: returns the unpacked root."""
    debs_dir = Path(debs_dir)
    x_dir = Path(x_dir)
    root = x_dir / pkg
    if (root / ".done").exists():
        return root
    debs_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(debs_dir.glob(f"{pkg}_*.deb"))
    if not debs:
        r = subprocess.run(["apt-get", "download", pkg], cwd=debs_dir, capture_output=True, text=True)
        debs = sorted(debs_dir.glob(f"{pkg}_*.deb"))
        if not debs:
            raise CorpusError(f"cannot download {pkg}: {r.stderr.strip()[:300]}")
    deb = debs[-1]
    root.mkdir(parents=True, exist_ok=True)
    log(f"unpacking {deb.name}")
    if pkg in ARCHIVES:
        inner = ARCHIVES[pkg]
        subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{root}' --wildcards './{inner}' './usr/share/doc/*'",
                       shell=True, check=True)
        with zipfile.ZipFile(root / inner) as z:
            members = [m for m in z.namelist() if m.lower().endswith(AUDIO_EXT)]
            z.extractall(root / "zip", members)
        os.unlink(root / inner)
    else:
        subprocess.run(f"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{root}' --wildcards "
                       "'*.ogg' '*.wav' '*.flac' '*.mp3' '*.opus' './usr/share/doc/*' 2>/dev/null; true",
                       shell=True, check=True)
    (root / ".done").touch()
    return root


# ----------------------------------------------------------------------------- licences (DEP-5)
@dataclass
class CopyrightStanza:
    files: list[str]
    licence: str
    copyright: str


@dataclass
class CopyrightInfo:
    stanzas: list[CopyrightStanza] = field(default_factory=list)

    def licence_for(self, *paths: str) -> tuple[str, str]:
        """Last matching stanza wins (DEP-5).  Patterns are upstream paths; they are matched against the
        installed path's tail as well.  Returns (licence, copyright holders)."""
        best = None
        for st in self.stanzas:
            for pat in st.files:
                if any(_glob_tail_match(p, pat) for p in paths):
                    best = st
                    break
        if best is None:
            return "unknown", ""
        return best.licence, best.copyright


def _glob_tail_match(path: str, pat: str) -> bool:
    if pat in ("*", "*/*"):
        return True
    if fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(path, "*/" + pat):
        return True
    parts = pat.split("/")
    for k in range(1, len(parts) - 2):   # drop upstream leading dirs, keep >= 3 components
        tail = "/".join(parts[k:])
        if fnmatch.fnmatchcase(path, "*/" + tail) or fnmatch.fnmatchcase(path, tail):
            return True
    # a stanza naming one file exactly (e.g. sonic-pi's "etc/samples/vinyl_hiss.flac", installed as
    # usr/share/sonic-pi/samples/vinyl_hiss.flac): its directory + file name are enough
    if len(parts) >= 2 and not any(c in parts[-1] for c in "*?["):
        return path == "/".join(parts[-2:]) or path.endswith("/" + "/".join(parts[-2:]))
    return False


def parse_copyright(path: Path) -> CopyrightInfo:
    info = CopyrightInfo()
    if not Path(path).exists():
        return info
    text = Path(path).read_text("utf-8", errors="replace")
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        cur = None
        for line in para.splitlines():
            if line and not line[0].isspace() and ":" in line:
                cur, _, val = line.partition(":")
                cur = cur.strip().lower()
                fields[cur] = val.strip()
            elif cur and line.strip():
                fields[cur] += "\n" + line.strip()
        if "files" in fields and "license" in fields:
            files = fields["files"].split()
            lic = fields["license"].splitlines()[0].strip()
            info.stanzas.append(CopyrightStanza(files, lic, " ".join(fields.get("copyright", "").split())))
    return info


def copyright_path(root: Path, pkg: str) -> Path:
    return Path(root) / "usr/share/doc" / pkg / "copyright"
