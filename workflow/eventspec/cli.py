"""``eventspec <stage>``: every pipeline stage as a command, with or without Snakemake.

Each stage takes the pipeline config either as a YAML file (``--config``) or
as inline JSON of the sections it uses (``--config-json``, how the Snakemake
rules pass their slice); both are validated against xsd/config.schema.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USER_ERRORS = {
    "eventspec.adapters.errors": "AdapterError",
    "eventspec.config": "ConfigError",
    "eventspec.decoding.lossless": "LosslessError",
    "eventspec.devices": "ModelLoadError",
    "eventspec.dsec": "DataError",
    "eventspec.extract": "ExtractionError",
    "eventspec.models.loading": "ModelLoadError",
    "eventspec.profiling.costs": "ProfileError",
    "eventspec.store": "StoreError",
}
"""Errors reported as a message (exit 2), not a traceback. Stages import their modules lazily, so a command
pays only for what it runs (a figure job imports neither torch nor the config schema's jsonschema); an
error class whose module was never imported cannot have been raised."""


def user_errors() -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], name) for m, name in USER_ERRORS.items() if m in sys.modules)


def _config(args) -> dict:
    from .config import load

    return load(args.config, args.config_json)


def _validate(cfg: dict) -> dict:
    """``cfg`` with command-line flags applied, checked against the config schema."""
    from .config import validate

    return validate(cfg, "command line")


def cmd_toy_sequences(args) -> None:
    from .toyworld.manifest import write_toy_world

    cfg = _config(args)
    write_toy_world(args.out or cfg["data"]["root"], cfg["toy"], args.manifest, args.workers)


def cmd_prepare_samples(args) -> None:
    from .digest import write_digest
    from .samples import prepare_samples

    cfg = _config(args)
    out = prepare_samples(cfg, args.split, args.out)
    write_digest(out, args.digest or Path(str(out) + ".digest.json"))


def cmd_toy_models(args) -> None:
    from .digest import write_manifest
    from .toy.trainer import build_toy_models, write_eval

    cfg = _config(args)
    out = {"verifier": args.verifier_out, "drafter": args.drafter_out}
    report = build_toy_models(args.train, args.test, out, cfg["toy_models"])
    write_eval(report, args.eval)
    write_manifest(args.manifest, out, cfg["toy_models"])


def cmd_extract_lm_head(args) -> None:
    from .lm_head import extract_lm_head

    cfg = _config(args)
    extract_lm_head(cfg["models"]["verifier"], args.out)


def cmd_extract(args) -> None:
    import torch

    from .extract import extract_features

    cfg = _config(args)
    ex = cfg["extract"]
    for flag, key in (("max_samples", "max_samples"), ("max_questions", "max_questions"),
                      ("max_new_tokens", "max_new_tokens"), ("chunk_size", "write_rows")):
        if getattr(args, flag) is not None:
            ex[key] = getattr(args, flag)
    if args.quant is not None:
        for model in cfg["models"].values():
            model["quant"] = args.quant
    _validate(cfg)
    shard = (args.shard, args.shards)
    torch.set_num_threads(args.threads)
    extract_features(cfg, args.split, args.samples, args.samples_digest, args.out, shard, args.resume)


def cmd_gather(args) -> None:
    from .digest import write_digest
    from .extract import gather_features

    out = gather_features(args.parts, args.out)
    write_digest(out, args.digest)


def cmd_bench_store(args) -> None:
    import json

    from .bench_store import bench_store, format_result

    result = bench_store(
        args.features, args.work_dir, args.chunk_size, args.batch_size, args.repeats, args.max_rows,
        args.chunk_rows, args.chunk_positions,
    )
    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


SEED_LEVELS = {"1": "L1", "2": "L2", "3": "L3", "4": "L4", "5": "L5", "6": "L5F"}
SEED_HPARAM_FLAGS = ("bottleneck_dim", "num_heads", "num_layers", "ffn_dim")


def set_flags(args, target: dict, flags) -> None:
    """``target[key] = args.<flag>`` for every (flag, key) given on the command line."""
    for flag, key in flags:
        if getattr(args, flag) is not None:
            target[key] = getattr(args, flag)


def adapter_entry(cfg: dict, args) -> dict:
    """The registry entry ``args.name`` with the seeds' flags applied (a new entry when a level is given)."""
    adapters = cfg.setdefault("adapters", {})
    if args.name not in adapters and args.adapter_level is None:
        from .adapters.registry import registry_entry

        registry_entry(cfg, args.name)
    entry = adapters.setdefault(args.name, {})
    if args.adapter_level is not None:
        entry["level"] = SEED_LEVELS.get(args.adapter_level, args.adapter_level)
    set_flags(args, entry, (("num_epochs", "epochs"), ("batch_size", "batch_size"),
                            ("learning_rate", "learning_rate"), ("early_stopping", "early_stopping")))
    if args.vlm_only:
        entry["vlm_only"] = True
    if any(getattr(args, flag) is not None for flag in SEED_HPARAM_FLAGS):
        set_flags(args, entry.setdefault("hyperparams", {}), ((flag, flag) for flag in SEED_HPARAM_FLAGS))
    _validate(cfg)
    return entry


def _torch_config(args) -> dict:
    """The config of a command that runs torch on ``--threads`` CPU threads."""
    import torch

    torch.set_num_threads(args.threads)
    return _config(args)


def cmd_train_adapter(args) -> None:
    from .adapters.train import train_adapter

    cfg = _torch_config(args)
    entry = adapter_entry(cfg, args)
    verifier = args.verifier or cfg["models"]["verifier"]["path"]
    history = train_adapter(args.name, entry, cfg["train"], args.train_store, args.test_store, args.lm_head,
                            args.out or f"{cfg['results']}/adapters/{args.name}", verifier, resume=args.resume)
    best = history["epochs"][history["best_epoch"] - 1]
    print(f"{args.name}: {len(history['epochs'])} epochs, best epoch {history['best_epoch']}: "
          f"val loss {best['val_loss']:.4f}, cos {best['val_cos']:.4f}, accept@0.90 {best['val_accept_90']:.3f}, "
          f"token top-1 {best['val_token_top1']:.3f}", file=sys.stderr)


def cmd_benchmark(args) -> None:
    from .decoding.benchmark import frames_markdown, markdown, run_benchmark, run_frames_sweep

    cfg = _config(args)
    bench = cfg["benchmark"]
    for key in ("max_samples", "max_new_tokens", "warmup", "repeats", "threads"):
        if getattr(args, key) is not None:
            bench[key] = getattr(args, key)
    if args.gamma is not None:
        for entry in bench["configs"].values():
            entry["gamma"] = args.gamma
    if args.frames_sweep:
        bench["frames_sweep"]["frames"] = [int(n) for n in args.frames_sweep.split(",")]
    if args.configs and args.frames_sweep:
        bench["frames_sweep"]["configs"] = args.configs.split(",")
    _validate(cfg)
    samples = args.samples or f"{cfg['results']}/samples/test.zarr"
    if args.frames_sweep:
        print(frames_markdown(run_frames_sweep(cfg, samples, args.output_dir or f"{cfg['results']}/bench/frames")))
        return
    names = args.configs.split(",") if args.configs else None
    summary = run_benchmark(cfg, samples, args.output_dir or f"{cfg['results']}/bench", names, args.frames)
    print(markdown(summary))


def cmd_figure(args) -> None:
    from .figures.render import render

    render(args.name, args.inputs, args.out, args.tau)


def adapter_directory(path: str) -> str:
    """The seeds pass the checkpoint file; an adapter is its directory (config.json + best.safetensors)."""
    return str(Path(path).parent) if Path(path).is_file() else path


def evaluation_settings(cfg: dict, args) -> dict:
    """``evaluate`` config section with the seeds' flags applied."""
    section = cfg["evaluate"]
    set_flags(args, section, (("batch_size", "batch_size"), ("gamma_decode", "gamma")))
    set_flags(args, section["timing"], (("egpt_prefill_ms", "egpt_prefill_ms"), ("vl_prefill_ms", "vl_prefill_ms")))
    _validate(cfg)
    return section


def cmd_evaluate(args) -> None:
    from .evaluation.evaluate import evaluate_adapter, evaluate_two_phase
    from .evaluation.timing import load_timing

    cfg = _torch_config(args)
    section = evaluation_settings(cfg, args)
    timing, source = load_timing(section, args.bench_summary)
    verifier = args.verifier or cfg["models"]["verifier"]["path"]
    common = (args.test_data, args.lm_head, verifier, section, timing, source)
    if args.checkpoint:
        checkpoint = adapter_directory(args.checkpoint)
        result = evaluate_adapter(checkpoint, *common, args.output_dir or checkpoint)
    elif args.prefill_checkpoint and args.decode_checkpoint:
        result = evaluate_two_phase(adapter_directory(args.prefill_checkpoint), adapter_directory(args.decode_checkpoint),
                                    *common, args.output_dir or adapter_directory(args.decode_checkpoint))
    else:
        from .config import ConfigError

        raise ConfigError("eventspec evaluate: give --checkpoint, or both --prefill_checkpoint and --decode_checkpoint")
    overall = result["overall"]
    tau = f"{round(section['tau'] * 100)}"
    print(f"{result['adapter']['name']}: token-exact consecutive {overall['consecutive_mean_token_exact']:.2f}"
          if "consecutive_mean_token_exact" in overall else
          f"{result['adapter']['name']}: prefill accepted {overall['prefill_accepted_mean_token_exact']:.2f} token-exact",
          f"| estimated e2e speedup @{tau} {overall[f'estimated_speedup_e2e_{tau}']:.2f}, "
          f"token-exact {overall['estimated_speedup_e2e_token_exact']:.2f}", file=sys.stderr)


def cmd_compare_heads(args) -> None:
    from .evaluation.compare import compare_heads, verdict

    cfg = _torch_config(args)
    section = evaluation_settings(cfg, args)
    verifier = args.verifier or cfg["models"]["verifier"]["path"]
    result = compare_heads(adapter_directory(args.reference), adapter_directory(args.candidate), args.test_data,
                           args.lm_head, verifier, section, args.output_dir, args.resamples, cfg["train"]["seed"])
    print(verdict(result), file=sys.stderr)


def cmd_report(args) -> None:
    from .evaluation.report import write_report

    cfg = _config(args)
    write_report(args.metrics, args.out, cfg["evaluate"]["tau"])


def cmd_digest(args) -> None:
    from .digest import write_digest

    write_digest(args.store, args.out)


def _add_held_out_args(p) -> None:
    """What ``evaluate`` and ``compare-heads`` read: the held-out store, the verifier's LM head and embedding, the
    evaluation's batch size and gamma."""
    p.add_argument("--test_data", required=True, help="held-out feature store (.zarr)")
    p.add_argument("--lm_head", required=True, help="verifier LM head safetensors (token metrics)")
    p.add_argument("--verifier", help="verifier model directory, for token embeddings (default: models.verifier.path)")
    p.add_argument("--batch_size", type=int, help="override evaluate.batch_size")
    p.add_argument("--gamma_decode", type=int, help="override evaluate.gamma")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="pipeline config YAML (default: the repository's config.yaml)")
    p.add_argument("--config-json", help="config sections as inline JSON (overrides --config per top-level key)")


def add_figure_parser(sub) -> None:
    """``eventspec figure NAME``: NAME must be registered (``eventspec.figures.FIGURES``); argparse names the
    known ones when it is not. The epilog says what each reads."""
    from .figures import FIGURES

    epilog = "figures and the JSON files they read (--inputs, in this order):\n" + "\n".join(
        f"  {name:<22} {figure.reads}" + ("  [--tau]" if figure.tau else "") for name, figure in FIGURES.items())
    p = sub.add_parser("figure", help="one figure (eventspec.figures.NAME) from small JSON files to a PNG",
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=list(FIGURES), metavar="NAME", help="a registered figure (listed below)")
    p.add_argument("--inputs", nargs="+", required=True, help="the JSON files it reads, in its order")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--tau", type=float, default=0.9, help="cosine threshold drawn beside token-exact (default 0.9)")
    p.set_defaults(func=cmd_figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventspec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("toy-sequences", help="generate the toy DSEC-format world")
    _add_config_args(p)
    p.add_argument("--out", help="DSEC root to write (default: data.root)")
    p.add_argument("--manifest", required=True, help="manifest JSON (sha256 of every file written)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (output is identical for any count)")
    p.set_defaults(func=cmd_toy_sequences)

    p = sub.add_parser("prepare-samples", help="cut windows and write the sample store of one split")
    _add_config_args(p)
    p.add_argument("--split", required=True, choices=["train", "test"])
    p.add_argument("--out", required=True, help="sample store (.zarr)")
    p.add_argument("--digest", help="digest JSON (default: <out>.digest.json)")
    p.set_defaults(func=cmd_prepare_samples)

    p = sub.add_parser("toy-models", help="train the toy verifier/drafter pair")
    _add_config_args(p)
    p.add_argument("--train", required=True, help="train sample store")
    p.add_argument("--test", required=True, help="test sample store")
    p.add_argument("--verifier-out", required=True, help="directory of the trained verifier")
    p.add_argument("--drafter-out", required=True, help="directory of the trained drafter")
    p.add_argument("--eval", required=True, help="per-question accuracy JSON")
    p.add_argument("--manifest", required=True, help="sha256 of every file of both models")
    p.set_defaults(func=cmd_toy_models)

    p = sub.add_parser("extract-lm-head", help="Stage 0: the verifier's LM head to safetensors")
    _add_config_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_extract_lm_head)

    p = sub.add_parser("extract", help="Stage 1: paired hidden states of one split (or one shard of it)")
    _add_config_args(p)
    p.add_argument("--split", required=True, choices=["train", "test"])
    p.add_argument("--samples", required=True, help="sample store of the split")
    p.add_argument("--samples-digest", required=True, help="its digest JSON (the store must match it)")
    p.add_argument("--out", required=True, help="feature store to write (.zarr)")
    p.add_argument("--shard", type=int, default=0, help="which shard of the split this job extracts")
    p.add_argument("--shards", type=int, default=1, help="number of shards the split is cut into (default 1: all of it)")
    p.add_argument("--resume", action="store_true", help="continue from the rows a killed run committed")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--quant", choices=["none", "4bit", "8bit"], help="override models.*.quant")
    p.add_argument("--max_samples", type=int, help="override extract.max_samples")
    p.add_argument("--max_questions", type=int, help="override extract.max_questions")
    p.add_argument("--max_new_tokens", type=int, help="override extract.max_new_tokens")
    p.add_argument("--chunk_size", type=int, help="override extract.write_rows (rows per committed shard)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("gather", help="concatenate shard feature stores into one")
    p.add_argument("parts", nargs="+", help="shard stores, in order")
    p.add_argument("--out", required=True)
    p.add_argument("--digest", required=True)
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("bench-store", help="bytes and read throughput: our feature store vs the seeds' layout")
    p.add_argument("features", help="a feature store to take the features from")
    p.add_argument("--work-dir", default="results/bench_store", help="where both layouts are written")
    p.add_argument("--chunk_size", type=int, default=1000, help="samples per seeds chunk file")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size for the read pass")
    p.add_argument("--repeats", type=int, default=3, help="read passes per layout (best is kept)")
    p.add_argument("--max-rows", type=int, help="use only the first rows of the store")
    p.add_argument("--chunk-rows", type=int, help="rows per zarr chunk of our copy (default: as in the source store)")
    p.add_argument("--chunk-positions", type=int, help="positions per zarr chunk of our copy (default: as in the source)")
    p.add_argument("--json", help="also write the result as JSON")
    p.set_defaults(func=cmd_bench_store)

    p = sub.add_parser("train-adapter", help="Stage 2: train one registered adapter from the feature stores")
    _add_config_args(p)
    p.add_argument("--name", required=True, help="registry key (config adapters.<name>); new with --adapter_level")
    p.add_argument("--train-store", required=True, help="train feature store (.zarr)")
    p.add_argument("--test-store", required=True, help="held-out feature store (.zarr), evaluated every epoch")
    p.add_argument("--lm-head", required=True, help="verifier LM head safetensors (CE term and token top-1)")
    p.add_argument("--verifier", help="verifier model directory, for its token embedding (default: models.verifier.path)")
    p.add_argument("--out", help="adapter directory (default: <results>/adapters/<name>)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from <out>.partial/last.safetensors")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--adapter_level", help="1-5 or 6 (= L5F), or a level name (L1..L5, L5F, B1)")
    p.add_argument("--num_epochs", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--early_stopping", type=int, help="patience in epochs")
    p.add_argument("--vlm_only", action="store_true", help="verifier -> verifier (with level 5: B1)")
    for flag in SEED_HPARAM_FLAGS:
        p.add_argument(f"--{flag}", type=int)
    p.set_defaults(func=cmd_train_adapter)

    p = sub.add_parser("benchmark", help="Stage 4: wall-clock benchmark of lossless speculative decoding and peers")
    _add_config_args(p)
    p.add_argument("--samples", help="sample store of the held-out split (default: <results>/samples/test.zarr)")
    p.add_argument("--output_dir", help="where <config>.jsonl, summary.json and summary.md go (default: <results>/bench)")
    p.add_argument("--configs", help="comma-separated configuration names (default: all in benchmark.configs)")
    p.add_argument("--max_samples", type=int, help="override benchmark.max_samples")
    p.add_argument("--max_new_tokens", type=int, help="override benchmark.max_new_tokens")
    p.add_argument("--gamma", type=int, help="override the gamma of every configuration")
    p.add_argument("--warmup", type=int, help="override benchmark.warmup")
    p.add_argument("--repeats", type=int, help="override benchmark.repeats")
    p.add_argument("--threads", type=int, help="override benchmark.threads")
    p.add_argument("--frames", type=int, help="verifier frames per clip (default: the checkpoint's)")
    p.add_argument("--frames_sweep", help="comma-separated frame counts: run benchmark.frames_sweep's configurations"
                   " at each (default output_dir: <results>/bench/frames)")
    p.set_defaults(func=cmd_benchmark)

    add_figure_parser(sub)

    p = sub.add_parser("evaluate", help="Stage 3: acceptance metrics of an adapter (or a two-phase pair) on the held-out store")
    _add_config_args(p)
    p.add_argument("--checkpoint", help="adapter directory (or its best.safetensors)")
    p.add_argument("--prefill_checkpoint", help="two-phase: the prefill adapter (L1-L4)")
    p.add_argument("--decode_checkpoint", help="two-phase: the decode head (L5/L5F/B1)")
    _add_held_out_args(p)
    p.add_argument("--output_dir", help="where the metrics JSON go (default: the checkpoint directory)")
    p.add_argument("--egpt_prefill_ms", type=float, help="override evaluate.timing.egpt_prefill_ms")
    p.add_argument("--vl_prefill_ms", type=float, help="override evaluate.timing.vl_prefill_ms")
    p.add_argument("--bench-summary", help="measured benchmark summary.json (overrides evaluate.bench_summary)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare-heads", help="Stage 3: two decode heads' token-exact tau per round on the same "
                       "held-out pairs, paired bootstrap interval (B1E vs B1: does the event camera add acceptance?)")
    _add_config_args(p)
    p.add_argument("--reference", required=True, help="reference decode head directory (e.g. results/adapters/B1_tok)")
    p.add_argument("--candidate", required=True, help="candidate decode head directory (e.g. results/adapters/B1E)")
    _add_held_out_args(p)
    p.add_argument("--output_dir", required=True, help="where head_comparison.json goes")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.set_defaults(func=cmd_compare_heads, egpt_prefill_ms=None, vl_prefill_ms=None)

    p = sub.add_parser("report", help="METRICS_COMPARISON.md: one row per adapter from their acceptance_metrics.json")
    _add_config_args(p)
    p.add_argument("--metrics", nargs="+", required=True, help="acceptance_metrics.json files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("digest", help="write the digest JSON of a store")
    p.add_argument("store")
    p.add_argument("out")
    p.set_defaults(func=cmd_digest)

    from .profiling.cli import add_parsers

    add_parsers(sub, _add_config_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is None and getattr(args, "config_json", None) is None and hasattr(args, "config"):
        from .config import DEFAULT_CONFIG

        args.config = str(DEFAULT_CONFIG)
    try:
        args.func(args)
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        print(f"eventspec {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
