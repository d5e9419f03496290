"""``eventspec profile``, ``eventspec project`` and ``eventspec cost-ratios`` (added to the main parser by
``add_parsers``)."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_profile(args) -> None:
    from .measure import run_profile

    frames = [int(f) for f in args.frames.split(",")]
    profile = run_profile(args.name, "tiny" if args.tiny else "real", args.depth, args.device, args.dtype, frames,
                          args.compile, args.repeats, out=args.out)
    c = profile["costs_s"]
    print(f"{profile['name']} ({profile['kind']}, {profile['device']}): verifier prefill "
          + ", ".join(f"{f} frames {s * 1e3:.1f} ms" for f, s in c["verifier_prefill_by_frames"].items())
          + f"; drafter prefill {c['drafter_prefill'] * 1e3:.1f} ms; decode step eager "
          f"{c['decode_step']['eager'] * 1e3:.2f} ms; head {c['head_step']['eager'] * 1e3:.2f} ms -> {args.out}")


def _adapters(args) -> dict:
    from ..config import DEFAULT_CONFIG, load

    return load(args.config or str(DEFAULT_CONFIG), args.config_json).get("adapters") or {}


def cmd_project(args) -> None:
    from ..schemas import write_json
    from . import costs, project

    summary = json.loads(Path(args.summary).read_text())
    bench_dir = Path(args.traces or Path(args.summary).parent)
    traces = project.read_traces(bench_dir, summary["configs"])
    profiles = [costs.load_profile(p) for p in args.profiles]
    if args.toy:
        profiles.insert(0, costs.from_summary(summary, traces, "toy-run"))
    frames = [int(f) for f in args.frames.split(",")] if args.frames else None
    adapters = _adapters(args)
    result = project.project_all(summary, traces, profiles, frames, adapters, str(args.summary))
    result["self_consistency"] = project.self_consistency(summary, traces, adapters)
    text = project.markdown(result) + project.consistency_markdown(result["self_consistency"])
    if args.out:
        write_json(args.out, result, "projection")
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(text)


def cmd_cost_ratios(args) -> None:
    from . import costs, ratios

    summary = json.loads(Path(args.summary).read_text())
    print(ratios.markdown(ratios.cost_ratios(summary, costs.load_profile(args.reference))))


def cmd_replay(args) -> None:
    from .costs import load_profile
    from .replay_bench import run_replay, summary_lines

    result = run_replay(args.trace, load_profile(args.profile), "tiny" if args.tiny else "real", args.device,
                        args.dtype, args.frames, args.max_new_tokens, args.gamma, args.repeats)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(summary_lines(result)))
    bad = [n for n, v in result["configs"].items() if not v["lossless"] or v["replay_exact"] is False]
    if bad:
        raise SystemExit(f"eventspec replay: {bad} not lossless or not replaying the trace exactly")


def add_parsers(sub, add_config_args) -> None:
    p = sub.add_parser("profile", help="component costs of the real pair at real shapes (random weights, no download)")
    p.add_argument("--name", default="profile", help="the profile's name")
    p.add_argument("--out", required=True, help="profile JSON to write (xsd/cost_profile.schema.json)")
    p.add_argument("--tiny", action="store_true", help="tiny dimensions (CI) instead of the published sizes")
    p.add_argument("--depth", choices=["full", "truncated"], help="default: full on CUDA, truncated (extrapolated per "
                   "layer from 1- and 2-layer towers) elsewhere")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--frames", default="8", help="verifier frame counts, comma-separated (e.g. 8,16,32)")
    p.add_argument("--compile", action="store_true", help="also the compiled StaticCache step (CUDA graphs on CUDA)")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("project", help="each configuration's expected time and speedup vs the strongest peer under "
                       "cost profiles, from a benchmark's own traces")
    add_config_args(p)
    p.add_argument("summary", help="the benchmark's summary.json (its <config>.jsonl traces beside it)")
    p.add_argument("--traces", help="directory of <config>.jsonl (default: the summary's)")
    p.add_argument("--profiles", nargs="*", default=["h200-bf16", "seeds-4bit-2gpu"],
                   help="reference names or profile JSON files")
    p.add_argument("--toy", action="store_true", help="also the run's own profile (toy-run)")
    p.add_argument("--frames", help="only these frame counts (comma-separated)")
    p.add_argument("--out", help="projection JSON (xsd/projection.schema.json)")
    p.add_argument("--markdown", help="the report section (markdown)")
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("replay", help="the engine on the real-shaped random pair under acceptance replay, beside "
                       "its projection")
    p.add_argument("trace", help="a benchmark trace (<config>.jsonl) whose decode rounds are replayed")
    p.add_argument("--profile", default="h200-bf16", help="profile of the projection printed beside")
    p.add_argument("--tiny", action="store_true", help="tiny dimensions (CI)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--gamma", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="result JSON")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("cost-ratios", help="the run's dimensionless cost ratios beside a reference profile's")
    p.add_argument("summary", help="the benchmark's summary.json")
    p.add_argument("--reference", default="h200-bf16", help="reference name or profile JSON (default h200-bf16)")
    p.set_defaults(func=cmd_cost_ratios)

