"""The training loop, read as the schedule it is: at every step the growth state decides the stage,
alpha and class level (growth events run their function-preserving operations when the state
changes), D's phase and then G's phase run (`gan_loss.py` owns every loss term), G_ema follows G, ADA
adjusts p; between steps come logs, sample grids and metrics (`snapshots.py`) and checkpoints.
Resuming restores every piece of state, so a resumed run reproduces an uninterrupted one exactly on
the same machine."""

from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from styleseg.config import ConfigError, TrainConfig, to_dict
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.jsonio import write_json
from styleseg.models.growth import GrowthState, growth_at
from styleseg.models.weights import load_weights
from styleseg.training import distributed as dist
from styleseg.training.augment import AdaController
from styleseg.training.checkpoint import load_state, save_checkpoint
from styleseg.training.compiled import compiled_graphs
from styleseg.training.ema import ema_beta, ema_update
from styleseg.training.feeder import build_feeder
from styleseg.training.gan_loss import GanLoss, step_args
from styleseg.training.growth_events import apply_growth, growth_messages
from styleseg.training.networks import build_networks
from styleseg.training.preflight import data_factor
from styleseg.training.randomness import CounterRandom
from styleseg.training.run_dir import RunLogger
from styleseg.training.snapshots import Snapshots
from styleseg.training.statistics import StepStatistics


class TrainingError(StylesegError):
    pass


class Trainer:
    def __init__(self, cfg: TrainConfig, data: PreparedDataset, run: Path, device: torch.device):
        self.cfg, self.data, self.run, self.device = cfg, data, run, device
        self.rank, self.world = dist.rank(), dist.world_size()
        self.levels = data.class_map.levels()
        sizes = [lvl.num_classes for lvl in self.levels]
        self.data_factor = data_factor(data, cfg)
        self.feeder, self.label_record = build_feeder(cfg, data, self.levels, self.data_factor, device)
        image_share = self.label_record["image_share"]
        self.nets = build_networks(cfg, sizes, image_share > 0, device, self.world, len(self.levels))
        self.ada = AdaController(cfg.augment)
        self.rand = CounterRandom(cfg.seed, self.rank, self.world, device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bf16" else nullcontext()
        mirrors = [torch.from_numpy(lvl.mirror_lut()).to(device) for lvl in self.levels]
        self.loss = GanLoss(cfg, self.nets, self.ada, self.rand, mirrors, image_share, autocast, device)
        self.snapshots = Snapshots(cfg, data, self.levels, run, device)
        self.images_seen, self.step = 0, 0
        self.d_only_until = 0  # images_seen below which only D trains (a warm start's fresh D catching up)
        self.stats = StepStatistics()
        self.structure: tuple | None = None
        self.next_snapshot = self.next_checkpoint = 0
        self.stop_signal: int | None = None
        self.logger = RunLogger(run, enabled=dist.is_main())
        if dist.is_main():
            write_json(run / "labels.json", self.label_record)

    # ----- state -----
    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    def growth(self, images: int | None = None) -> GrowthState:
        kimg = self.kimg if images is None else images / 1000
        return growth_at(kimg, self.cfg.schedule, self.cfg.model.num_stages, len(self.levels))

    def state_dict(self) -> dict:
        # No generator states: a step draws every number from CounterRandom (seed, step), never from
        # torch's global generators (tests/training/test_train.py checks), and saving CUDA's would
        # touch every visible GPU from every rank. Older checkpoints' rng_* entries are ignored.
        return {
            "images_seen": self.images_seen,
            "step": self.step,
            "structure": list(self.structure) if self.structure else None,
            "next_snapshot": self.next_snapshot,
            "next_checkpoint": self.next_checkpoint,
            "opt_G": self.nets.opt_G.state_dict(),
            "opt_D": self.nets.opt_D.state_dict(),
            "ada": self.ada.state_dict(),
            **self.feeder.sampler_states(),
            "world_size": self.world,
            "d_only_until": self.d_only_until,
        }

    def load(self, ckpt: Path) -> None:
        """Restore everything from a checkpoint (any number of processes may have written it)."""
        for name, module in self.nets.weights().items():
            load_weights(module, ckpt / f"{name}.safetensors")
        state = load_state(ckpt / "state.pt")
        self.images_seen, self.step = int(state["images_seen"]), int(state["step"])
        self.structure = tuple(state["structure"]) if state["structure"] else None
        self.next_snapshot, self.next_checkpoint = state["next_snapshot"], state["next_checkpoint"]
        self.nets.opt_G.load_state_dict(state["opt_G"])
        self.nets.opt_D.load_state_dict(state["opt_D"])
        self.ada.load_state_dict(state["ada"])
        self.feeder.load_sampler_states(state)
        self.d_only_until = int(state.get("d_only_until", 0))

    def meta(self) -> dict:
        return {
            "kimg": self.kimg,
            "step": self.step,
            "growth": asdict(self.growth()),
            "classes": self.data.class_map.to_json(),
            "data": str(self.data.root),
        }

    def save(self) -> Path | None:
        self.read_stats(reset=False)  # never checkpoint a run whose losses went non-finite
        dist.check_consistent(self.nets.weights())
        path = None
        if dist.is_main():
            name = f"ckpt-{self.images_seen:09d}"
            path = save_checkpoint(
                self.run / "checkpoints", name, self.nets.weights(), self.state_dict(), to_dict(self.cfg),
                self.meta(), self.cfg.keep_checkpoints,
            )  # fmt: skip
            self.logger.event({"event": "checkpoint", "kimg": self.kimg, "path": str(path)})
        dist.barrier()
        return path

    # ----- one step -----
    def grow_to(self, st: GrowthState) -> None:
        frozen_below = self.cfg.optim.freeze_g_below_stage
        if frozen_below is not None and st.stage < frozen_below:
            raise ConfigError(
                f"optim.freeze_g_below_stage is {frozen_below} but training is at stage {st.stage}, where every "
                "weight of G it uses is frozen: the option is for growing a trained model (train --init)"
            )
        for kind, detail in growth_messages(self.cfg, self.levels, self.structure, st):
            dist.print0(f"growth event at kimg {self.kimg:.1f}: {kind}: {detail}")
            self.logger.event({"event": "growth", "kind": kind, "kimg": self.kimg, "detail": detail})
        apply_growth(self.nets, self.levels, self.structure, st)
        self.structure = st.structure

    def real_inputs(self, st: GrowthState, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This step's real batch; the next step's starts reading in the background."""
        next_seen = self.images_seen + batch * self.world
        lookahead = None
        if next_seen < int(self.cfg.schedule.total_kimg * 1000):
            next_st = self.growth(next_seen)
            next_batch = self.cfg.optim.at_stage(self.cfg.optim.batch, next_st.stage)
            lookahead = (next_st, next_batch, self.loss.photos_in(next_st, next_batch))
        return self.feeder.next(st, batch, lookahead, self.loss.photos_in(st, batch))

    def train_step(self) -> None:
        """One iteration: growth if due, D's phase, then (once D no longer trains alone) G's phase, the
        EMA and the tracked average w; ADA's p adjusts. Statistics stay on the device."""
        cfg, nets, st = self.cfg, self.nets, self.growth()
        self.rand.start_step(self.step)  # this step's numbers: a function of the step, so resume is exact
        if st.structure != self.structure:
            self.grow_to(st)
        args = step_args(cfg, st)
        lr = cfg.optim.at_stage(cfg.optim.lr, st.stage)
        for opt, opt_lr in ((nets.opt_G, lr), (nets.opt_D, lr * cfg.optim.d_lr_mul)):
            for group in opt.param_groups:
                group["lr"] = opt_lr
        real_img, real_seg = self.real_inputs(st, args.batch)
        nets.opt_D.zero_grad(set_to_none=True)
        stats, loss_d = self.loss.d_phase(st, args, real_img, real_seg, self.step)
        nets.opt_D.step()
        global_batch = args.batch * self.world
        if self.images_seen >= self.d_only_until:
            nets.opt_G.zero_grad(set_to_none=True)
            loss_g, ws = self.loss.g_phase(st, args)
            nets.opt_G.step()
            nets.G.update_w_avg(dist.all_reduce_mean(ws[:, 0].detach().float().mean(0)))
            stats["loss_G"] = loss_g.detach()
            self.images_seen += global_batch
            beta = ema_beta(global_batch, self.images_seen, cfg.optim.ema_kimg, cfg.optim.ema_rampup)
            ema_update(nets.G_ema, nets.G, beta)
        else:
            self.images_seen += global_batch
        self.ada.maybe_adjust(self.step, global_batch, dist.all_reduce_sum)
        self.step += 1
        stats["loss_D"] = loss_d.detach()
        self.stats.add(stats)

    def read_stats(self, reset: bool = True) -> dict[str, float]:
        """Means of the step statistics since the last reset, read from the device at once (a step
        itself never waits for the host); a non-finite loss among them stops the run. Read at every
        log line (`log_every` steps) and before every checkpoint, so no checkpoint holds a diverged run."""
        means = self.stats.means()
        bad = {k: v for k, v in means.items() if k.startswith("loss_") and not math.isfinite(v)}
        if bad:
            raise TrainingError(
                f"non-finite loss in steps {self.stats.first_step + 1}-{self.step} (kimg {self.kimg:.2f}): "
                + ", ".join(f"{k[5:]} {v}" for k, v in bad.items())
                + f"; stopped without saving, the last good checkpoint is in {self.run / 'checkpoints'}"
            )
        if reset:
            self.stats.reset(self.step)
        return means

    # ----- between steps -----
    def snapshot_and_metrics(self) -> None:
        if not dist.is_main():
            return
        st = self.growth()
        self.snapshots.grid(self.nets.G_ema, st, self.images_seen)
        if self.snapshots.measurable(st, self.data_factor):
            metrics = self.snapshots.metrics(self.nets.G_ema, st)
            self.logger.scalars({"kimg": round(self.kimg, 3), **metrics}, self.images_seen)

    def log_line(self, stats: dict[str, float], images_per_s: float, bar) -> None:
        st, cfg = self.growth(), self.cfg
        h, w = cfg.model.stage_shape(st.stage)
        wait, batches = self.feeder.take_wait()
        record = {
            "kimg": round(self.kimg, 3),
            "step": self.step,
            "resolution": h,
            "res_w": w,
            "stage": st.stage,
            "alpha": round(st.alpha, 4),
            "classes": self.levels[st.seg_level].num_classes if st.seg_level is not None else 0,
            "seg_alpha": round(st.seg_alpha, 4),
            "augment_p": round(self.ada.p, 4),
            "ada_rt": round(self.ada.last_rt, 4),
            "images_per_s": round(images_per_s, 2),
            # training-thread time blocked on the data reader, per step since the last log line
            "data_wait_ms": round(1000 * wait / max(batches, 1), 3),
            **{k: round(v, 5) for k, v in stats.items()},
        }
        if cfg.compile:
            record["compiled_graphs"] = compiled_graphs()
        self.logger.scalars(record, self.images_seen)
        bar.set_postfix(
            res=f"{h}x{w}",
            a=f"{st.alpha:.2f}",
            K=record["classes"],
            p=f"{self.ada.p:.2f}",
            D=f"{stats['loss_D']:.2f}",
            G=f"{stats['loss_G']:.2f}" if "loss_G" in stats else "-",  # "-": D alone (warm start)
        )

    def _install_signal_handlers(self) -> None:
        def handler(signum, frame):
            self.stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    def train(self, progress: bool = True) -> int:
        """Train to total_kimg; returns the exit code (128 + signal when stopped by one)."""
        cfg = self.cfg
        total = int(cfg.schedule.total_kimg * 1000)
        self._install_signal_handlers()
        show = progress and dist.is_main()
        bar = tqdm(
            total=total, initial=self.images_seen, unit="img", disable=not show, dynamic_ncols=True, smoothing=0.05
        )
        t_start, seen_start = time.perf_counter(), self.images_seen
        while self.images_seen < total:
            if self.images_seen >= self.next_snapshot:
                self.snapshot_and_metrics()
                self.next_snapshot += int(cfg.snapshot_kimg * 1000)
            if self.images_seen >= self.next_checkpoint:
                due = self.images_seen > 0
                while self.next_checkpoint <= self.images_seen:  # advance first: the saved state is "done"
                    self.next_checkpoint += int(cfg.checkpoint_kimg * 1000)
                if due:
                    self.save()
            self.train_step()
            bar.update(self.images_seen - bar.n)
            if self.step % cfg.log_every == 0 or self.images_seen >= total:
                rate = (self.images_seen - seen_start) / max(time.perf_counter() - t_start, 1e-9)
                self.log_line(self.read_stats(), rate, bar)  # means over the steps since the last line
            if self.stop_signal is not None:
                bar.close()
                path = self.save()
                self.feeder.close()
                dist.print0(f"stopped by signal {self.stop_signal} at kimg {self.kimg:.2f}; checkpoint: {path}")
                return 128 + self.stop_signal
        bar.close()
        self.snapshot_and_metrics()
        path = self.save()
        rate = (self.images_seen - seen_start) / max(time.perf_counter() - t_start, 1e-9)
        dist.print0(f"done: {self.kimg:.1f} kimg, {rate:.1f} images/s this session; checkpoint: {path}")
        self.feeder.close()
        self.logger.close()
        return 0
