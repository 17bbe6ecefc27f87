"""The ``ivcr`` command. Sub-commands join as their capability lands; each is a thin wrapper over
the Python API so that anything the CLI does can be done from an import too."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import InvalidArgument, IvcrError, MissingFile
from .models.registry import TEXT_MODELS


def _cmd_config(args: argparse.Namespace) -> int:
    """What a C/C++/Rust build needs to link libivcr (like pkg-config's answers)."""
    from . import native

    lib, inc, pc = native.library_path().parent, native.include_dir(), native.pkgconfig_dir()
    answers = {"cflags": f"-I{inc}", "libs": f"-L{lib} -Wl,-rpath,{lib} -livcr", "libdir": str(lib),
               "includedir": str(inc), "pkgconfigdir": str(pc)}
    asked = [k for k in answers if getattr(args, k)]
    if not asked:
        for k, v in answers.items():
            print(f"{k}: {v}")
        return 0
    if not native.library_path().is_file():
        print(f"error: libivcr is not built at {native.library_path()}; run `make build`", file=sys.stderr)
        return 2
    print(" ".join(answers[k] for k in asked))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import onnxruntime

    from . import build_info
    from .models import model_dir, prepared_models

    info = build_info()
    info["onnxruntime"] = onnxruntime.__version__
    info["execution_providers"] = onnxruntime.get_available_providers()
    info["model_dir"] = str(model_dir())
    info["models_prepared"] = sorted(prepared_models())
    info["llm"] = _llm_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    width = max(len(f"{k}.{sub}") for k, v in info.items() for sub in (v if isinstance(v, dict) else [""]))
    for key in sorted(info):
        value = info[key]
        if isinstance(value, dict):  # one line each: "llm.cpu_variant  haswell"
            for sub in value:
                v = value[sub]
                print(f"{key + '.' + sub:<{width}}  {', '.join(map(str, v)) if isinstance(v, list) else v}")
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:<{width}}  {value}")
    return 0


def _llm_info() -> str | dict:
    """The LLM run time (--responder llm) as `ivcr info` shows it: the ggml CPU variant its worker
    loads on this CPU, and llama.cpp's own system-info string."""
    from .dialogue.gguf_responder import llm_backend_info

    info = llm_backend_info()
    if not info.get("installed"):
        return "not installed (make llm)"
    if "error" in info:
        return f"broken: {info['error']}"
    out = {k: info[k] for k in ("llama_cpp", "portable", "cpu_variant", "cpu_variants", "system_info", "probe")}
    # variants this CPU reports it runs but whose probe died (llm_worker.choose_cpu_variant)
    out["cpu_variants_rejected"] = [f"{v} ({why})" for v, why in sorted(info["rejected"].items())]
    return out


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import MODEL_NAMES, model_dir, prepare_models, prepared_models

    if args.action == "prepare":
        cards = prepare_models(force=args.force)
    else:
        cards = prepared_models()
    print(f"model folder: {model_dir()}")
    for name in MODEL_NAMES:
        card = cards.get(name)
        dims = f", {card.dim}-d" if card and card.dim else ""
        state = f"{card.kind}{dims}, {card.path}" if card else "not prepared (ivcr models prepare)"
        print(f"  {name:<24} {state}")
    return 0


# Exit codes (docs/ARCHITECTURE.md): 0 everything asked was done; 1 nothing could be done (an
# error); 2 the command line was wrong; 3 done in part (some inputs failed, each one reported).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _safe(text) -> str:
    """Text from files, videos or users as printed: no escape sequences or control characters
    (they would drive the terminal), line by line."""
    from .dialogue.router import strip_controls

    return "\n".join(strip_controls(line) for line in str(text).split("\n"))


def _cmd_index(args: argparse.Namespace) -> int:
    from .index import Ingestor

    progress = not (args.quiet or args.json)
    if args.rebuild_text:
        from .index.rebuild_text import rebuild_text
        from .models.registry import DEFAULT_TEXT_MODEL

        if args.paths or args.remove or args.ray:
            raise ValueError("--rebuild-text runs alone (no videos, --remove or --ray)")
        rebuilt = rebuild_text(args.index, args.text_model or DEFAULT_TEXT_MODEL)
        print(json.dumps(vars(rebuilt), indent=2) if args.json else rebuilt.summary())
        return EXIT_OK
    if args.ray:
        from .index.ray_ingest import RayIngest

        if args.remove:
            raise ValueError("--remove runs without --ray (it only writes tombstones)")
        ing = RayIngest(args.index, args.ray, workers=args.workers, shards=args.shards, clip_seconds=args.clip_seconds,
                        speech=not args.no_speech, clip_model=args.clip_model, text_model=args.text_model,
                        ocr=not args.no_ocr)
        try:
            report = ing.run(args.paths, progress=progress)
        finally:
            ing.close()
    else:
        ing = Ingestor(args.index, clip_seconds=args.clip_seconds, speech=not args.no_speech,
                       clip_model=args.clip_model, shards=args.shards, text_model=args.text_model,
                       ocr=not args.no_ocr)
        try:
            report = ing.run(args.paths, remove=args.remove or (), progress=progress)
        finally:
            ing.close()
    print(json.dumps(report.to_json(), indent=2, ensure_ascii=False) if args.json else _safe(report.summary()))
    return report.exit_code()


def _cmd_check(args: argparse.Namespace) -> int:
    from .index.check import check_index

    report = check_index(args.index, repair=args.repair)
    print(_safe(report.summary()))
    return EXIT_OK if report.ok else EXIT_ERROR


def _cmd_search(args: argparse.Namespace) -> int:
    from .dialogue.evidence import confident_concepts, supporting_lines
    from .index import hits_to_json
    from .index.protocol import source_label
    from .index.sharded import open_index

    from .index.image_query import search_by

    picture = _read_picture(args.image) if args.image is not None else None
    if not args.query.strip() and picture is None:  # before the index is opened
        raise InvalidArgument("give a query, a picture (--image FILE), or both")
    hits = search_by(open_index(args.index, ray_address=args.ray), args.query, picture, k=args.k)
    if args.json:
        print(hits_to_json(hits))
        return 0
    if not hits:
        print("no results")
    for h in hits:
        also = f"  (also {', '.join(h.aliases)})" if h.aliases else ""
        print(_safe(f"{h.rank:>2}. {h.path}{also}  {h.start:.1f}s-{h.end:.1f}s  video {h.score:.3f}  "
                    f"moment {h.moment_score:.3f}"))
        for src, a, b, text in supporting_lines(h.evidence, args.query):  # --json has every line
            print(_safe(f"      {source_label(src)} {a:.1f}-{b:.1f}s: {text}"))
        concepts = confident_concepts(h.evidence)
        if concepts:
            print(_safe(f"      looks like: {concepts}"))
    return 0


def _read_picture(path: str) -> bytes:
    from .index.image_query import MAX_BYTES

    p = Path(path)
    if not p.is_file():
        raise MissingFile(f"no picture at {path}")
    if p.stat().st_size > MAX_BYTES:  # refused before it is read into memory
        raise InvalidArgument(f"{path} has {p.stat().st_size} bytes; a query picture has at most {MAX_BYTES}")
    return p.read_bytes()


def _print_reply(reply, index) -> None:
    print(_safe(f"[{reply.intent}] {reply.text}"))
    if reply.intent in ("video retrieval", "selection", "negative feedback", "refinement", "analogous search") and reply.candidates:
        for i, c in enumerate(reply.candidates[:10], 1):
            mark = "*" if c.video == reply.video else " "
            print(_safe(f"   {mark}{i:>2}. {Path(c.path).name}  ({c.score:.2f})"))


def _responder(args: argparse.Namespace):
    """The responder --responder names: None (the engine's default, the template) or the LLM one."""
    if getattr(args, "responder", "template") == "llm":
        from .dialogue.gguf_responder import GGUFResponder

        return GGUFResponder()
    return None


def _cmd_chat(args: argparse.Namespace) -> int:
    from .dialogue import Engine

    engine = Engine.open(args.index, ray_address=args.ray, responder=_responder(args))
    session = engine.session()
    if args.script:
        # one turn per "\n" line: str.splitlines() would also split on \x0b, \x0c, \x1c.. inside a line
        lines = [l.strip() for l in Path(args.script).read_text(encoding="utf-8").split("\n")]
        for line in lines:
            if not line or line.startswith("#"):
                continue
            print(f"> {_safe(line)}")
            _print_reply(session.ask(line), engine.index)
            print()
        if args.save:
            Path(args.save).write_text(session.to_json(), encoding="utf-8")
        return 0
    try:
        import readline  # noqa: F401  (history and line editing for input())

        hist = Path.home() / ".ivcr_history"
        if hist.exists():
            readline.read_history_file(str(hist))
    except (ImportError, OSError):
        readline = None
    print("ivcr chat: ask for videos and moments; 'help' for examples, 'quit' to leave.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            break
        if line.lower() in ("quit", "exit", "q"):
            break
        _print_reply(session.ask(line), engine.index)
    if readline is not None:
        try:
            readline.write_history_file(str(Path.home() / ".ivcr_history"))
        except OSError:
            pass
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .dialogue import Engine
    from .eval.ivcr200k import evaluate, format_report, load_ivcr200k
    from .eval.ivcr200k_authors import compare_with_authors, per_turn_table, score_turns

    dialogues = load_ivcr200k(args.file)
    engine = Engine.open(args.index, ray_address=args.ray, responder=_responder(args))
    protocols = ["candidates", "index"] if args.protocol == "both" else [args.protocol]
    report: dict = {"protocols": {}}
    for protocol in protocols:
        predictions: list = []
        turns: list = []
        report["protocols"][protocol] = evaluate(engine, dialogues, teacher_forced=not args.free_running,
                                                 skip_missing=args.skip_missing, predictions=predictions,
                                                 protocol=protocol, turns=turns)
        if protocol != "candidates":
            continue
        # the same answers as the IVCR-200K authors' scorer reads them, and where it disagrees
        raw = [d.raw for d in dialogues]
        theirs = score_turns(predictions, raw)
        report["authors_scorer"] = {"per_turn": per_turn_table(theirs),
                                    "differences": compare_with_authors(turns, theirs, raw)}
        if args.predictions:  # what that scorer reads: [{"user_q", "output"}], candidates given
            Path(args.predictions).write_text(json.dumps(predictions, ensure_ascii=False, indent=1))
            report["predictions"] = {"file": args.predictions, "protocol": "candidates"}
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def _cmd_shard(args: argparse.Namespace) -> int:
    from .index.manifest import split_index

    counts = split_index(args.index, args.out, args.shards, progress=not args.quiet)
    print(f"{args.out}: {len(counts)} shards, videos per shard: {', '.join(map(str, counts))}")
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {n}")
    return n


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(args.index, host=args.host, port=args.port, token=args.token, sessions_db=args.sessions,
          ttl_s=args.ttl, batching=False if args.no_batching else None, responder=_responder(args))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"{bench_dir} not found: the benchmarks live in the source checkout")
    names = args.suites or sorted(p.stem.removeprefix("bench_") for p in bench_dir.glob("bench_*.py"))
    files = []
    for n in names:
        f = bench_dir / f"bench_{n}.py"
        if not f.is_file():
            raise ValueError(f"no benchmark suite {n!r}; have: "
                             + ", ".join(sorted(p.stem.removeprefix('bench_') for p in bench_dir.glob('bench_*.py'))))
        files.append(str(f))
    cmd = [sys.executable, "-m", "pytest", *files, "--benchmark-enable", "-s", "-q"]
    return subprocess.call(cmd, cwd=bench_dir.parent)


RESPONDER_HELP = ("how replies are worded: template (default, fast) or llm (the IVCR answer line stays the "
                  "engine's; a small local model adds a sentence from the evidence; needs ivcr_engine[llm])")
RAY_HELP = "auto (a cluster started on this machine with `ray start`), local, or HOST:PORT; needs ivcr_engine[ray]"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ivcr", description="Interactive Video Corpus Retrieval engine")
    parser.add_argument("--version", action="version", version=f"ivcr_engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser("info", help="build info, execution providers")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_cmd_info)

    p_config = sub.add_parser("config", help="compiler and linker flags for libivcr (the C ABI, include/ivcr.h)")
    for flag, what in (("cflags", "the compiler's -I flag"), ("libs", "the linker's flags, with an rpath"),
                       ("libdir", "the folder of libivcr.so"), ("includedir", "the folder of ivcr.h"),
                       ("pkgconfigdir", "the folder of ivcr.pc (PKG_CONFIG_PATH)")):
        p_config.add_argument(f"--{flag}", action="store_true", help=what)
    p_config.set_defaults(func=_cmd_config)

    p_models = sub.add_parser("models", help="list or prepare (export) the default models")
    p_models.add_argument("action", choices=["list", "prepare"], nargs="?", default="list")
    p_models.add_argument("--force", action="store_true", help="export again even if present")
    p_models.set_defaults(func=_cmd_models)

    p_index = sub.add_parser("index", help="index videos (folders, files, .txt/.jsonl manifests)")
    p_index.add_argument("paths", nargs="*", help="videos, folders or manifests")
    p_index.add_argument("--index", required=True, help="index folder (created if missing)")
    p_index.add_argument("--clip-seconds", type=float, default=2.0, help="clip grid in seconds (default 2)")
    p_index.add_argument("--remove", nargs="+", metavar="PATH", help="remove these videos from the index")
    p_index.add_argument("--no-speech", action="store_true", help="skip speech recognition")
    p_index.add_argument("--no-ocr", action="store_true",
                         help="do not read on-screen text (a new index then has no ocr channel; an index "
                              "built before OCR never gets one, and the report says so)")
    p_index.add_argument("--clip-model", help="folder of a CLIP export (models/export_clip.py): adds a clip channel")
    p_index.add_argument("--text-model", choices=TEXT_MODELS,
                         help=f"text model of a new index's text channels (default {TEXT_MODELS[0]}, multilingual); "
                              "an existing index keeps its own")
    p_index.add_argument("--rebuild-text", action="store_true",
                         help="re-embed an existing index's text channels with --text-model (default the multilingual "
                              "one) from its stored speech, subtitle, on-screen and concept text: no video is decoded")
    p_index.add_argument("--quiet", action="store_true", help="no progress bar")
    p_index.add_argument("--json", action="store_true", help="print the report as JSON (no progress bar)")
    p_index.add_argument("--shards", type=_positive_int, help="write a sharded index of N shards (videos placed by content hash)")
    p_index.add_argument("--ray", metavar="ADDRESS", help="decode + encode on Ray workers: " + RAY_HELP)
    p_index.add_argument("--workers", type=_positive_int, default=2, help="with --ray: encoding workers (default 2)")
    p_index.set_defaults(func=_cmd_index)

    p_check = sub.add_parser("check", help="verify an index against its metadata; --repair fixes what it can")
    p_check.add_argument("--index", required=True)
    p_check.add_argument("--repair", action="store_true",
                         help="trim uncommitted tails, rebuild derived caches (never touches committed data)")
    p_check.set_defaults(func=_cmd_check)

    p_search = sub.add_parser("search", help="one-shot search by text and/or a picture: ranked videos with moments")
    p_search.add_argument("query", nargs="?", default="", help="what the videos show or say (optional with --image)")
    p_search.add_argument("--image", metavar="FILE", help="search by this picture (JPEG, PNG or WebP), with the "
                                                          "query's words if given: 'like this, but at night'")
    p_search.add_argument("--index", required=True)
    p_search.add_argument("-k", type=int, default=10)
    p_search.add_argument("--json", action="store_true")
    p_search.add_argument("--ray", metavar="ADDRESS", help="a sharded index's shards on Ray actors: " + RAY_HELP)
    p_search.set_defaults(func=_cmd_search)

    p_chat = sub.add_parser("chat", help="multi-turn dialogue over an index (interactive, or --script)")
    p_chat.add_argument("--index", required=True)
    p_chat.add_argument("--script", help="a file of turns, one per line: prints the transcript")
    p_chat.add_argument("--save", help="with --script: write the session state as JSON here")
    p_chat.add_argument("--ray", metavar="ADDRESS", help="a sharded index's shards on Ray actors: " + RAY_HELP)
    p_chat.add_argument("--responder", choices=["template", "llm"], default="template", help=RESPONDER_HELP)
    p_chat.set_defaults(func=_cmd_chat)

    p_eval = sub.add_parser("eval", help="evaluate on a benchmark")
    eval_sub = p_eval.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p_ivcr = eval_sub.add_parser("ivcr200k", help="IVCR-200K dialogues: video R@1/5/10, moment R@1 at IoU .3/.5/.7")
    p_ivcr.add_argument("file")
    p_ivcr.add_argument("--index", required=True)
    p_ivcr.add_argument("--free-running", action="store_true", help="do not teacher-force the history")
    p_ivcr.add_argument("--skip-missing", action="store_true",
                        help="skip (and count) dialogues whose videos are not in the index instead of failing")
    p_ivcr.add_argument("--predictions", metavar="FILE",
                        help="write every turn's answer as the IVCR-200K authors' scorer reads it: [{user_q, output}] "
                             "(the candidates-given protocol)")
    p_ivcr.add_argument("--protocol", choices=["both", "candidates", "index"], default="both",
                        help="candidates: video turns rank the sample's candidate_videos and answer with the position "
                             "in that list (the paper's); index: they rank the whole index; both (default): side by side")
    p_ivcr.add_argument("--json", action="store_true")
    p_ivcr.add_argument("--ray", metavar="ADDRESS", help="a sharded index's shards on Ray actors: " + RAY_HELP)
    p_ivcr.add_argument("--responder", choices=["template", "llm"], default="template", help=RESPONDER_HELP)
    p_ivcr.set_defaults(func=_cmd_eval)

    p_shard = sub.add_parser("shard", help="sharded indexes: split an existing index into N shards")
    shard_sub = p_shard.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_split = shard_sub.add_parser("split", help="copy an index's live videos into a new N-shard index (resumable)")
    p_split.add_argument("--index", required=True, help="the unsharded index to split")
    p_split.add_argument("--out", required=True, help="folder of the new sharded index")
    p_split.add_argument("--shards", type=_positive_int, required=True)
    p_split.add_argument("--quiet", action="store_true", help="no progress bar")
    p_split.set_defaults(func=_cmd_shard)
    p_serve = sub.add_parser("serve", help="HTTP API (sessions, search, media, OpenAI chat) and the web page")
    p_serve.add_argument("--index", required=True)
    p_serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; others need --token)")
    p_serve.add_argument("--port", type=int, default=8080)
    p_serve.add_argument("--token", help="bearer token required on /v1 and /metrics")
    p_serve.add_argument("--sessions", help="sessions database (default: INDEX/sessions.sqlite)")
    p_serve.add_argument("--ttl", type=float, default=24 * 3600, help="seconds before an idle session expires")
    p_serve.add_argument("--no-batching", action="store_true", help="run each search alone (no micro-batching)")
    p_serve.add_argument("--responder", choices=["template", "llm"], default="template", help=RESPONDER_HELP)
    p_serve.set_defaults(func=_cmd_serve)

    p_bench = sub.add_parser("bench", help="run benchmark suites (tables with ratios; slow)")
    p_bench.add_argument("suites", nargs="*", help="e.g. search span decode text_encoder ingest dialogue (default: all)")
    p_bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader left (`ivcr search ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (IvcrError, ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        print(_safe(f"ivcr: error: {exc}"), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
