"""Command line: ``python -m transinr COMMAND …`` (``transinr --help`` lists them)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from .failures import DEBUG_VARIABLE, report

# A dotted config override, ``train.lr=3e-4``.
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _train(args) -> None:
    from .config import load_config
    from .evaluate import format_psnr
    from .runtime import smoke_mode
    from .train import SMOKE_STEPS, smoke_budget, train

    config = load_config(args.config, args.overrides)
    if args.init:
        from .trained import config_for_fine_tuning

        config = config_for_fine_tuning(config, args.init, args.overrides)
    if smoke_mode():
        config = smoke_budget(config)
        print(f"smoke mode (TRANSINR_SMOKE=1): at most {SMOKE_STEPS} training steps")
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    results = train(config, run_dir, device=args.device, progress=not args.quiet)
    if "test_psnr_mean" not in results:  # a non-zero rank under torchrun: rank 0 reports
        return
    print(f"\n{config.name}: {results['steps']} steps, {results['images_seen']} training signals, "
          f"{results['train_seconds']:.0f} s of training")
    print(f"held-out PSNR: {format_psnr(results['test_psnr_mean'], results['test_psnr_std'], results.get('test_psnr_se'))} "
          f"over {results['test_items']} signals")
    if "train_psnr_mean" in results:
        print(f"training images (un-augmented, {results['train_items']} spread over the split): "
              f"{results['train_psnr_mean']:.2f} dB")
    if "ood_psnr_mean" in results:
        where = f"objects of {results['ood_root']}" if "ood_root" in results else "procedural textures"
        print(f"out of distribution ({results['ood_items']} {where}): "
              f"{format_psnr(results['ood_psnr_mean'], results['ood_psnr_std'], results.get('ood_psnr_se'))}")
    if "ood_blank_white_psnr" in results:
        print(f"(a blank white image out of distribution: {results['ood_blank_white_psnr']:.2f} dB)")
    if "mean_image_psnr" in results:
        print(f"(predicting the mean training image: {results['mean_image_psnr']:.2f} dB)")
    if "blank_white_psnr" in results:
        print(f"(rendering a blank white image: {results['blank_white_psnr']:.2f} dB)")
    print(f"figure: {results['figure']}\nrun folder: {run_dir}")


def _evaluate(args) -> None:
    from .evaluate import evaluate_checkpoint, format_psnr

    results = evaluate_checkpoint(args.checkpoint, split=args.split, device=args.device,
                                  max_items=args.max_items, out_dir=args.out_dir,
                                  overrides=args.overrides)
    print(f"{args.checkpoint} on {args.split}: {format_psnr(results['psnr_mean'], results['psnr_std'], results.get('psnr_se'))} "
          f"over {results['n']} signals")
    if "ood_psnr_mean" in results:
        where = f"objects of {results['ood_root']}" if "ood_root" in results else "procedural textures"
        print(f"out of distribution ({results['ood_items']} {where}): "
              f"{format_psnr(results['ood_psnr_mean'], results['ood_psnr_std'], results.get('ood_psnr_se'))}")
    if "ood_blank_white_psnr" in results:
        print(f"(a blank white image out of distribution: {results['ood_blank_white_psnr']:.2f} dB)")
    print(f"figure: {results['figure']}")


EXTERNAL_COMMANDS = {
    "render-meshes": ("transinr.data.mesh_views", "render a folder of OBJ/GLB/PLY meshes to learnit-format views"),
    "build-emoji": ("transinr.data.build_emoji", "rebuild the shipped 64 px emoji file, or the full-size cache"),
    "compare": ("transinr.compare", "train several configs on the same budget and write the comparison tables"),
    "scale": ("transinr.scale", "scaling study: every method at growing budgets, Trans-INR at several sizes; table and plot"),
    "paired": ("transinr.paired", "per-signal PSNR differences of trained models against a reference, with paired standard errors"),
    "ablate-groups": ("transinr.ablation", "train G = 1, 4, 16, 64 weight groups at equal budget; table and figure"),
    "export": ("transinr.pretrained", "turn a checkpoint into a small fp16 safetensors file (a shipped model)"),
    "figures": ("transinr.figures", "draw the analysis figures (attention, layer-wise decoding, weight statistics)"),
    "build-3d": ("transinr.data.procedural_shapes", "build the embedded procedural 3D set (chairs, cars, lamps)"),
    "views-used": ("transinr.views_used", "what a 2-view model does with each support view: PSNR given each, attention"),
}


# Commands that train: they pick a CPU thread count first and say which (runtime.choose_threads).
TRAINING_COMMANDS = ("train", "compare", "ablate-groups")


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a count of items)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transinr", description=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error (also: {DEBUG_VARIABLE}=1); may follow the command")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="meta-train a config (resumes if the run folder has a checkpoint)")
    train.add_argument("config", help="a shipped config name (e.g. emoji32_demo) or a YAML path")
    train.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=3e-4")
    train.add_argument("--run-dir", help="run folder (default runs/<config name>)")
    train.add_argument("--init", metavar="MODEL",
                       help="fine-tune: start from a trained model (shipped name, run folder, checkpoint or "
                            ".safetensors) with its model section; sets train.init_from")
    train.add_argument("--device", default=None, help="auto (default: the config's), cpu, cuda, cuda:1, mps")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint on held-out data and draw samples")
    evaluate.add_argument("checkpoint", metavar="MODEL",
                          help="a run folder, a checkpoint, a shipped model name (e.g. emoji32) or a .safetensors file")
    evaluate.add_argument("overrides", nargs="*", help="dotted key=value overrides (e.g. data.root=…)")
    evaluate.add_argument("--split", default="test",
                          help="a split of the model's dataset (test, train, …) or ood, the out-of-distribution set")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--max-items", type=positive_int, default=None, help="score the first N signals only")
    evaluate.add_argument("--out-dir", default=None, help="default: the checkpoint's folder")
    evaluate.set_defaults(run=_evaluate)

    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        # Listed for --help; ``main`` hands their arguments to the module's cli_main.
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one command inside the error handler of :mod:`transinr.failures`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug may stand anywhere: before the command, or among its own arguments.
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    argv = [item for item in argv if item != "--debug"]
    with report(debug):
        if argv and argv[0] in TRAINING_COMMANDS and not {"-h", "--help"} & set(argv):
            from .runtime import choose_threads

            print(choose_threads())  # stdout: stderr stays for warnings and the one error line
        if argv and argv[0] in EXTERNAL_COMMANDS:
            # These commands own their whole argument list, --help included.
            import importlib

            status = importlib.import_module(EXTERNAL_COMMANDS[argv[0]][0]).cli_main(argv[1:])
            if isinstance(status, int) and status:
                sys.exit(status)
            return
        parser = build_parser()
        args = parse_with_overrides(parser, argv)
        args.run(args)


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parse_args``, except that ``key=value`` overrides may also follow the options
    (``train cfg --quiet train.lr=1e-3``), which argparse alone refuses."""
    args, extra = parser.parse_known_args(argv)
    overrides = [item for item in extra if OVERRIDE.match(item)]
    unknown = [item for item in extra if not OVERRIDE.match(item)]
    if overrides and hasattr(args, "overrides"):
        args.overrides = list(args.overrides or []) + overrides
    elif overrides:
        unknown = extra
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


if __name__ == "__main__":
    main()
