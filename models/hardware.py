"""GPU, node and cluster specs, and a catalog of real parts with provenance.

Datasheet numbers come from ``../shared/validation/hardware_measured.yaml``
(``peak_compute_spec``, ``hbm_bandwidth_spec``, ``interconnect_spec``), which quotes
stas00/ml-engineering and vendor datasheets; measured efficiencies come from the same
file (``gemm_efficiency_measured``: MAMF, best achieved bf16 matmul;
``collective_bandwidth_measured``: NCCL bus bandwidth). Each entry's ``source`` says
which. Where no measurement was at hand the field says "assumed" and why.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.efficiency import power_clock_ratio
from models.units import GB, GBIT, GIB, TFLOPS

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")

# NVIDIA maintainer (nccl-tests issue #212): "with ~20% protocol overhead NCCL gets an
# effective ~370 GB/s" of the 450 GB/s NVLink4 line rate. Used only for parts with no
# measured bus bandwidth.
NCCL_NVLINK_PROTOCOL_EFFICIENCY = 370.0 / 450.0


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    hbm_bytes: float                  # HBM capacity
    hbm_bytes_per_s: float            # HBM bandwidth, datasheet peak
    peak_fp32_flops_per_s: float      # dense, no sparsity
    peak_tf32_flops_per_s: float
    peak_bf16_flops_per_s: float
    peak_fp16_flops_per_s: float
    peak_fp8_flops_per_s: float       # 0 where the part has no fp8 tensor cores
    nvlink_bytes_per_s: float         # per-GPU intra-node bandwidth, one direction
    nvlink_busbw_bytes_per_s: float   # NCCL ring all-reduce bus bandwidth in one node
    gemm_efficiency: float            # best achieved / peak matmul rate (MAMF)
    num_sms: int                      # streaming multiprocessors (wave quantisation)
    tdp_w: float                      # board power
    price_usd_per_hour: float         # default price of one GPU-hour (overridable)
    source: str                       # provenance of the numbers above
    gemm_efficiency_fp8: float = 0.0  # MAMF fp8 e4m3 / fp8 peak; 0 = not measured (bf16 value used)
    # MSMF / peak: the matmul rate a GPU sustains once a long run holds it at its power limit and
    # the SM clock settles below boost (stas00/ml-engineering mamf-finder.py, "Maximum Sustainable
    # Matmul FLOPS"). 0 = no sustained measurement for this part (the burst MAMF is used).
    gemm_efficiency_sustained: float = 0.0
    # Board power limit the GPU runs at (nvidia-smi -pl); 0 = its TDP. Below TDP the sustained tensor-core
    # rate falls as models.efficiency.power_clock_ratio says.
    power_limit_w: float = 0.0

    def __post_init__(self) -> None:
        for f in ("hbm_bytes", "hbm_bytes_per_s", "peak_fp16_flops_per_s", "nvlink_bytes_per_s"):
            if getattr(self, f) <= 0:
                raise ValueError(f"GpuSpec {self.name}: {f} must be > 0, got {getattr(self, f)}")
        if not 0 < self.gemm_efficiency <= 1:
            raise ValueError(f"GpuSpec {self.name}: gemm_efficiency must be in (0, 1], got {self.gemm_efficiency}")
        if self.power_limit_w < 0:
            raise ValueError(f"GpuSpec {self.name}: power_limit_w must be >= 0 (0 = the TDP), got {self.power_limit_w}")
        if not 0 <= self.gemm_efficiency_sustained <= self.gemm_efficiency:
            raise ValueError(f"GpuSpec {self.name}: gemm_efficiency_sustained must be in [0, gemm_efficiency="
                             f"{self.gemm_efficiency}] (0 = not measured), got {self.gemm_efficiency_sustained}")

    @property
    def sustained_clock_ratio(self) -> float:
        """Sustained / burst tensor-core rate (MSMF / MAMF; 1.0 where no sustained rate was measured), times
        the drop at a power limit below TDP (models.efficiency.power_clock_ratio)."""
        msmf = self.gemm_efficiency_sustained / self.gemm_efficiency if self.gemm_efficiency_sustained else 1.0
        return msmf * float(power_clock_ratio(self.power_limit_w, self.tdp_w))

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense tensor-core peak for ``dtype`` in FLOP/s; ValueError if the part has none."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} unknown; choose one of {', '.join(DTYPES)}")
        value = getattr(self, f"peak_{dtype}_flops_per_s")
        if value <= 0:
            raise ValueError(f"dtype: {self.name} has no {dtype} tensor cores; use "
                             + ", ".join(d for d in DTYPES if getattr(self, f'peak_{d}_flops_per_s') > 0))
        return value


def _gpu(name, hbm_gib, hbm_tb_s, fp32, tf32, bf16, fp16, fp8, nvlink_gb_s, busbw_gb_s,
         gemm_eff, sms, tdp_w, price, source, fp8_eff=0.0, sustained=0.0) -> GpuSpec:
    # Converts the datasheet units once, at the edge (STYLE.md).
    return GpuSpec(name, hbm_gib * GIB, hbm_tb_s * 1e12, fp32 * TFLOPS, tf32 * TFLOPS,
                   bf16 * TFLOPS, fp16 * TFLOPS, fp8 * TFLOPS, nvlink_gb_s * GB,
                   busbw_gb_s * GB, gemm_eff, sms, tdp_w, price, source, fp8_eff, sustained)


_SPEC = "stas00/ml-engineering accelerator tables via hardware_measured.yaml (spec)"
_MAMF = "MAMF bf16 (hardware_measured.yaml gemm_efficiency_measured)"
_PRICE = "price: assumed typical 2025 on-demand cloud rate, override with --price-per-gpu-hour"
# Sustained (power-limited) matmul rate, measured by mamf-finder.py (stas00/ml-engineering
# compute/accelerator/README.md MAMF/MSMF tables, 2026): H200 bf16 MSMF 755 TFLOP/s with MAMF 834 in the same
# run, so the power limit holds a Hopper at 755/834 = 0.905 of its burst matmul rate. H100 and H800 are the
# same GH100 die at the same 700 W limit: the same ratio (assumed), applied to their own burst rate (MAMF 0.803
# of peak, as the H100 size sweep in models.kernel_tables, 797 TFLOP/s at 8192^3) rather than the H200's
# absolute MSMF, whose run had a higher burst (834): 0.727 of peak (719 TFLOP/s). B200 MSMF 1429.
# No MSMF is published for the A100. Its sustained rate is the MAMF scaled by the clock the A100 holds
# at its 400 W limit under a dense tensor-core load: 1305 of 1410 MHz, the clock NVIDIA used for A100
# HPL Rpeak (G. Lockwood, glennklockwood.com/garden/peak-FLOPS, "Rpeak"). HPL is fp64 DGEMM; bf16
# matmuls on random data are power-limited too (H. He, thonking.ai "Strangely, Matrix Multiplications
# on GPUs Run Faster When Given Predictable Data": 8192^3 bf16 on an A100, 257 TFLOP/s on randn
# inputs, 295 on zeros). GB200, V100 and MI300X have no sustained figure and keep the burst MAMF,
# which overstates what a long run sustains by the clock drop at the power limit (about 10% on H200).
_HOPPER_SUSTAINED = 0.803 * 755.0 / 834.0
_H200_SUSTAINED = 755.0 / 989.0   # measured on the H200 itself
_B200_SUSTAINED = 1429.0 / 2250.0
_A100_MAMF = 0.869
_A100_SUSTAINED = _A100_MAMF * 1305.0 / 1410.0
_MSMF = "sustained matmul MSMF (mamf-finder.py, stas00/ml-engineering)"
_A100_CLOCK = "sustained = MAMF x 1305/1410 MHz, A100 clock at 400 W under HPL (NVIDIA Rpeak practice, documented)"

GPUS: dict[str, GpuSpec] = {g.name: g for g in [
    _gpu("v100-sxm-32gb", 32, 0.9, 15.7, 0, 0, 125, 0, 150, 122, 0.80, 80, 300, 1.0,
         "NVIDIA V100 datasheet (fp16 125 TF, 900 GB/s, NVLink2 300 GB/s bidir); busbw 122 GB/s "
         "NVIDIA GTC24 S62129 (measured); gemm_efficiency 0.80 assumed (no MAMF measurement); " + _PRICE),
    _gpu("a100-sxm-40gb", 40, 1.555, 19.5, 156, 312, 312, 0, 300, 232, _A100_MAMF, 108, 400, 1.5,
         f"{_SPEC}; HBM 1.555 TB/s A100 40GB datasheet; busbw 232 GB/s nccl-tests #175 (measured); "
         f"{_MAMF} A100 SXM 0.869; {_A100_CLOCK}; {_PRICE}", sustained=_A100_SUSTAINED),
    _gpu("a100-sxm-80gb", 80, 2.0, 19.5, 156, 312, 312, 0, 300, 232, _A100_MAMF, 108, 400, 1.8,
         f"{_SPEC}; busbw 232 GB/s nccl-tests #175 (measured); {_MAMF} A100 SXM 0.869; {_A100_CLOCK}; {_PRICE}",
         sustained=_A100_SUSTAINED),
    _gpu("h100-sxm-80gb", 80, 3.35, 67, 494.5, 989, 989, 1979, 450, 370, 0.803, 132, 700, 2.5,
         f"{_SPEC}; busbw 370 GB/s ring (NVIDIA nccl-tests #212, maintainer); {_MAMF} H100 SXM 0.803, "
         f"fp8 0.709; {_MSMF} H200 755/834 sustained/burst, same die and power limit (assumed); {_PRICE}", 0.709,
         _HOPPER_SUSTAINED),
    _gpu("h800-sxm-80gb", 80, 3.35, 67, 494.5, 989, 989, 1979, 200, 160, 0.803, 132, 700, 2.5,
         "compute and HBM as H100 SXM (same die; NVIDIA H800 datasheet); NVLink 400 GB/s bidir; "
         "busbw 160 GB/s = DeepSeek-V3 report Sec 3.2.2 stated NVLink 160 GB/s; gemm_efficiency as "
         f"H100 (same die); {_MSMF} as H100 (same die, 700 W); {_PRICE}", 0.709, _HOPPER_SUSTAINED),
    _gpu("h200-sxm-141gb", 141, 4.8, 67, 494.5, 989, 989, 1979, 450, 370, 0.803, 132, 700, 3.5,
         f"{_SPEC}; busbw as H100 (NVLink4; nvbandwidth 396 GB/s pairwise measured); "
         f"{_MAMF} 'H200 is the same' as H100 0.803, fp8 0.734; {_MSMF} H200 755 (measured); {_PRICE}",
         0.734, _H200_SUSTAINED),
    _gpu("b200", 180, 8.0, 80, 1125, 2250, 2250, 4500, 900, 740, 0.776, 148, 1000, 5.0,
         f"{_SPEC}; busbw 740 GB/s = NVLink5 900 GB/s x NCCL protocol efficiency 370/450 (assumed); "
         f"{_MAMF} B200 SXM 0.776, fp8 0.763; {_MSMF} B200 1429 (measured); {_PRICE}",
         0.763, _B200_SUSTAINED),
    _gpu("gb200", 186, 8.0, 80, 1250, 2500, 2500, 5000, 900, 740, 0.729, 148, 1200, 6.0,
         f"{_SPEC}; busbw 740 GB/s as B200 (assumed); {_MAMF} GB200 0.729, fp8 0.723; {_PRICE}", 0.723),
    _gpu("mi300x", 192, 5.3, 163.4, 653.7, 1307.4, 1307.4, 2614.9, 448, 368, 0.60, 304, 750, 2.5,
         "AMD Instinct MI300X datasheet (dense peaks, 5.3 TB/s, Infinity Fabric 896 GB/s bidir); "
         "busbw = 448 GB/s x NCCL protocol efficiency (assumed, RCCL not measured); gemm_efficiency "
         f"0.60 assumed (no measurement in hand); {_PRICE}"),
]}


# DeepSpeed CPU-Adam (AVX-512, 2x 24-core Xeon Platinum 8168 of a DGX-2): 10B parameters in
# 2.57 s (Ren et al. 2021, "ZeRO-Offload", USENIX ATC, Sec. 6.2.4 Table 4, Adam latency, 1B-10B
# parameters; Table 3 is the model configurations). The text beside it (>5x over PyTorch's CPU Adam,
# 6.4x at 1B) was checked; the 2.57 s cell is an image in the copies at hand, transcribed, not
# re-measured. Used for every host (assumed: newer hosts are faster).
CPU_ADAM_PARAMS_PER_S = 10e9 / 2.57


# Variants real clusters have (issue 15). Datasheet numbers, dense (no sparsity); a gemm_efficiency
# marked "assumed" has no MAMF measurement: the measured part of the same die where there is one.
_DS = "datasheet"
GPUS.update({g.name: g for g in [
    _gpu("h100-sxm-96gb-500w", 96, 2.4, 53.6, 400, 800, 800, 1600, 450, 370, 0.803, 132, 500, 2.5,
         "H100 SXM5 96 GB HBM2e at a 500 W limit (torchtitan docs/performance.md footnote 1: 'H100 GPUs with 96GB "
         "HBM2e', 'lower TDP'); peaks = H100 SXM x 800/989 (NVIDIA H100 datasheet: 500 W configurations are "
         "bounded by power; assumed), HBM2e 2.4 TB/s (5 stacks; assumed); MAMF as H100 (same die)",
         0.709, _HOPPER_SUSTAINED),
    _gpu("h100-pcie-80gb", 80, 2.0, 51, 378, 756, 756, 1513, 64, 51, 0.803, 114, 350, 2.2,
         f"NVIDIA H100 PCIe {_DS}: 756 TF bf16, 2.0 TB/s HBM2e, 350 W, 114 SMs; GPU-GPU over PCIe gen5 x16 "
         "64 GB/s (no NVLink bridge assumed), busbw 0.8 of it (assumed); MAMF as H100 SXM (assumed)", 0.709),
    _gpu("h100-nvl-94gb", 94, 3.9, 60, 417.5, 835, 835, 1670, 300, 240, 0.803, 132, 400, 2.5,
         f"NVIDIA H100 NVL {_DS}: 835 TF bf16, 94 GB HBM3 3.9 TB/s, 350-400 W, NVLink bridge 600 GB/s bidir "
         "(pairs); busbw 0.8 of it (assumed); MAMF as H100 SXM (assumed)", 0.709),
    _gpu("h20", 96, 4.0, 44, 74, 148, 148, 296, 450, 370, 0.803, 78, 400, 1.5,
         f"NVIDIA H20 {_DS} (HGX H20): 148 TF bf16, 296 TF fp8, 96 GB HBM3 4.0 TB/s, NVLink 900 GB/s, 400 W; "
         "busbw as H100 (NVLink4); MAMF as H100 (assumed)", 0.709),
    _gpu("a800-sxm-80gb", 80, 2.0, 19.5, 156, 312, 312, 0, 200, 160, _A100_MAMF, 108, 400, 1.6,
         f"NVIDIA A800 SXM4 80GB {_DS}: A100 compute and HBM, NVLink 400 GB/s bidir; busbw 0.8 of it (assumed); "
         f"{_MAMF} as A100; {_A100_CLOCK}", sustained=_A100_SUSTAINED),
    _gpu("a100-pcie-40gb", 40, 1.555, 19.5, 156, 312, 312, 0, 32, 25, _A100_MAMF, 108, 250, 1.2,
         f"NVIDIA A100 PCIe 40GB {_DS}: 312 TF bf16, 1.555 TB/s, 250 W; GPU-GPU over PCIe gen4 x16 32 GB/s "
         f"(no NVLink bridge assumed); {_MAMF} as A100 SXM (same die; at 250 W lower in practice)"),
    _gpu("a100-pcie-80gb", 80, 1.935, 19.5, 156, 312, 312, 0, 32, 25, _A100_MAMF, 108, 300, 1.5,
         f"NVIDIA A100 PCIe 80GB {_DS}: 312 TF bf16, 1.935 TB/s, 300 W; PCIe gen4 x16 32 GB/s between GPUs "
         f"(assumed); {_MAMF} as A100 SXM"),
    _gpu("l40s", 48, 0.864, 91.6, 183, 362, 362, 733, 32, 25, 0.70, 142, 350, 1.0,
         f"NVIDIA L40S {_DS}: 362 TF bf16 and 733 TF fp8 dense, 48 GB GDDR6 864 GB/s, 350 W, no NVLink "
         "(PCIe gen4 x16 32 GB/s); gemm_efficiency 0.70 assumed"),
    _gpu("rtx-3090", 24, 0.936, 35.6, 35.6, 71, 71, 0, 32, 20, 0.70, 82, 350, 0.3,
         "NVIDIA Ampere GA102 whitepaper, RTX 3090: fp16/bf16 tensor 71 TF dense with fp32 accumulate, 24 GB "
         "GDDR6X 936 GB/s, 350 W, 82 SMs; no NVLink (PCIe gen4 x16); gemm_efficiency 0.70 assumed"),
    _gpu("rtx-4090", 24, 1.008, 82.6, 82.6, 165, 165, 330, 32, 20, 0.70, 128, 450, 0.4,
         "NVIDIA Ada AD102 whitepaper, RTX 4090: fp16/bf16 tensor 165 TF dense with fp32 accumulate, fp8 330 TF, "
         "24 GB GDDR6X 1008 GB/s, 450 W, 128 SMs; no NVLink (PCIe gen4 x16); gemm_efficiency 0.70 assumed"),
    _gpu("b300", 288, 8.0, 75, 1125, 2250, 2250, 4500, 900, 740, 0.776, 160, 1100, 6.0,
         f"NVIDIA HGX B300 {_DS} (Blackwell Ultra): 288 GB HBM3e 8 TB/s, NVLink5 1.8 TB/s bidir, bf16/fp8 dense as "
         "B200; busbw as B200 (assumed); MAMF as B200 (assumed)", 0.763, _B200_SUSTAINED),
    _gpu("gb300", 288, 8.0, 80, 1250, 2500, 2500, 5000, 900, 740, 0.729, 160, 1400, 7.0,
         f"NVIDIA GB300 NVL72 {_DS}: 288 GB HBM3e 8 TB/s per GPU, bf16/fp8 dense as GB200, NVLink5; MAMF as GB200 "
         "(assumed)", 0.723),
    _gpu("mi325x", 256, 6.0, 163.4, 653.7, 1307.4, 1307.4, 2614.9, 448, 368, 0.60, 304, 1000, 3.0,
         "AMD Instinct MI325X datasheet: 256 GB HBM3E 6 TB/s, MI300X compute (1307 TF bf16 dense), 1000 W; "
         "busbw and gemm_efficiency as MI300X (assumed)"),
]})

@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    gpus_per_node: int                # GPUs in one server
    nvlink_domain_gpus: int           # GPUs that share one NVLink/NVSwitch domain
    nic_bytes_per_s_per_gpu: float    # network line rate per GPU, one direction
    nic_efficiency: float             # achieved / line rate (NCCL busbw per NIC)
    node_overhead_w: float            # CPUs, NICs, fans: power beyond the GPUs
    source: str
    # host side (offload, models/parallel/offload.py); provenance in host_source
    host_memory_bytes: float = 0.0    # CPU memory of the node (0: not stated)
    pcie_gen: int = 4                 # PCIe generation of each GPU's host link
    pcie_lanes_per_gpu: int = 16      # PCIe lanes of each GPU's host link
    nvme_bytes_per_s: float = 0.0     # node's NVMe read/write bandwidth (0: not stated, no NVMe offload)
    cpu_adam_params_per_s: float = CPU_ADAM_PARAMS_PER_S  # host optimizer step rate, whole node
    host_source: str = ""

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1 or self.nvlink_domain_gpus < 1:
            raise ValueError(f"NodeSpec {self.name}: gpus_per_node and nvlink_domain_gpus must be >= 1")
        if self.nic_bytes_per_s_per_gpu <= 0:
            raise ValueError(f"NodeSpec {self.name}: nic_bytes_per_s_per_gpu must be > 0")


# nccl-tests #160 / #290 (NVIDIA maintainers): ~24 GB/s per 200 Gb NIC, 46-48 GB/s per 400 Gb NIC.
_NIC_EFF_200 = 24.0 / 25.0
_NIC_EFF_400 = 47.0 / 50.0

# Host memory and host links (vendor datasheets) sit with each node. NVMe bandwidth is not on these datasheets: 0
# (offload to NVMe needs it given: --nvme-gb-per-s, `nvme_gb_per_s:` in a scenario). Memory sizes are DIMM
# capacities, binary: "2 TB" = 2 TiB.
NODES: dict[str, NodeSpec] = {n.name: n for n in [
    NodeSpec("dgx-2", 16, 16, 100 * GBIT / 2, _NIC_EFF_200, 3500.0,
             "DGX-2: 16x V100, NVSwitch, 8x 100 Gb/s EDR IB (datasheet); overhead assumed",
             host_memory_bytes=1.5 * 2**40, pcie_gen=3,
             host_source="DGX-2 datasheet: 1.5 TB system memory, 2x Xeon Platinum 8168, PCIe gen3 x16 per GPU"),
    NodeSpec("dgx-a100", 8, 8, 200 * GBIT, _NIC_EFF_200, 3300.0,
             "DGX A100: NVSwitch, 8x 200 Gb/s HDR IB for compute (SC'21 paper, Selene); node 6.5 kW max "
             "minus 8x400 W GPUs (datasheet)",
             host_memory_bytes=2 * 2**40, pcie_gen=4,
             host_source="DGX A100 640GB datasheet: 2 TB system memory (1 TB on the 320GB system), PCIe gen4 x16 "
                         "per GPU"),
    NodeSpec("dgx-h100", 8, 8, 400 * GBIT, _NIC_EFF_400, 4600.0,
             "DGX H100: NVLink4 NVSwitch, 8x 400 Gb/s ConnectX-7 (datasheet); node 10.2 kW max minus 8x700 W",
             host_memory_bytes=2 * 2**40, pcie_gen=5,
             host_source="DGX H100 datasheet: 2 TB system memory, PCIe gen5 x16 per GPU"),
    NodeSpec("hgx-h200", 8, 8, 400 * GBIT, _NIC_EFF_400, 4600.0,
             "HGX H200: as DGX H100 (8x 400 Gb/s); overhead as DGX H100 (assumed)",
             host_memory_bytes=2 * 2**40, pcie_gen=5,
             host_source="as DGX H200 datasheet: 2 TB system memory, PCIe gen5 x16 (assumed for HGX)"),
    NodeSpec("dgx-b200", 8, 8, 400 * GBIT, _NIC_EFF_400, 6300.0,
             "DGX B200: NVLink5, 8x 400 Gb/s ConnectX-7 (datasheet); node 14.3 kW max minus 8x1000 W",
             host_memory_bytes=2 * 2**40, pcie_gen=5,
             host_source="DGX B200 datasheet: 2 TB system memory (4 TB option), PCIe gen5 x16"),
    NodeSpec("gb200-nvl72", 72, 72, 400 * GBIT, _NIC_EFF_400, 30000.0,
             "GB200 NVL72: 72 GPUs in one NVLink5 domain, one 400 Gb/s NIC per GPU (hardware_measured.yaml "
             "interconnect_spec); ~120 kW rack minus 72x1200 W (assumed)",
             host_memory_bytes=36 * 480 * 2**30, pcie_gen=5,
             host_source="GB200 NVL72 datasheet: 36 Grace CPUs x 480 GB LPDDR5X; host link taken as PCIe gen5 x16 "
                         "(conservative: NVLink-C2C is faster)"),
    NodeSpec("mi300x-8", 8, 8, 400 * GBIT, _NIC_EFF_400, 4500.0,
             "8x MI300X platform, 8x 400 Gb/s (typical OAM platform; assumed)",
             host_memory_bytes=2 * 2**40, pcie_gen=5,
             host_source="8x MI300X platform: 2 TB, PCIe gen5 x16 per GPU (typical; assumed)"),
    NodeSpec("pcie-8", 8, 8, 25 * GBIT, _NIC_EFF_200, 1500.0,
             "8 PCIe GPUs in one server, 200 Gb/s per node (assumed typical); GPU-GPU traffic over PCIe (the GPU's "
             "nvlink_bytes_per_s is its PCIe rate)"),
    NodeSpec("dgx-b300", 8, 8, 800 * GBIT, _NIC_EFF_400, 6300.0,
             "DGX B300: NVLink5, 8x 800 Gb/s ConnectX-8 (datasheet); overhead as DGX B200 (assumed)"),
    NodeSpec("gb300-nvl72", 72, 72, 800 * GBIT, _NIC_EFF_400, 30000.0,
             "GB300 NVL72: 72 GPUs in one NVLink5 domain, ConnectX-8 800 Gb/s per GPU (datasheet); overhead as "
             "GB200 NVL72 (assumed)"),
]}
DEFAULT_NODE = {"v100-sxm-32gb": "dgx-2", "a100-sxm-40gb": "dgx-a100", "a100-sxm-80gb": "dgx-a100",
                "h100-sxm-80gb": "dgx-h100", "h800-sxm-80gb": "dgx-h100", "h200-sxm-141gb": "hgx-h200",
                "b200": "dgx-b200", "gb200": "gb200-nvl72", "mi300x": "mi300x-8",
                "h100-sxm-96gb-500w": "dgx-h100", "h100-pcie-80gb": "pcie-8", "h100-nvl-94gb": "pcie-8",
                "h20": "dgx-h100", "a800-sxm-80gb": "dgx-a100", "a100-pcie-40gb": "pcie-8", "a100-pcie-80gb": "pcie-8",
                "l40s": "pcie-8", "rtx-3090": "pcie-8", "rtx-4090": "pcie-8", "b300": "dgx-b300",
                "gb300": "gb300-nvl72", "mi325x": "mi300x-8"}

_GPU_ALIASES = {"a100": "a100-sxm-80gb", "a100-80gb": "a100-sxm-80gb", "a100-40gb": "a100-sxm-40gb",
                "h100": "h100-sxm-80gb", "h800": "h800-sxm-80gb", "h200": "h200-sxm-141gb",
                "v100": "v100-sxm-32gb"}


def get_gpu(name: str) -> GpuSpec:
    """The catalog GPU called ``name`` (case-insensitive); ValueError listing the choices."""
    key = _GPU_ALIASES.get(name.lower(), name.lower())
    if key not in GPUS:
        raise ValueError(f"gpu: unknown GPU {name!r}; choose one of {', '.join(GPUS)}")
    return GPUS[key]


def get_node(name: str) -> NodeSpec:
    """The catalog node preset called ``name``; ValueError listing the choices."""
    if name.lower() not in NODES:
        raise ValueError(f"node: unknown node preset {name!r}; choose one of {', '.join(NODES)}")
    return NODES[name.lower()]


@dataclass(frozen=True, slots=True)
class Cluster:
    gpu: GpuSpec
    num_nodes: int
    node: NodeSpec
    oversubscription: float = 1.0     # fat-tree oversubscription above the leaf (1 = full bisection)
    price_usd_per_gpu_hour: float | None = None  # None: the GPU's catalog default
    pue: float = 1.2                  # data-centre power usage effectiveness (assumed typical)
    profile: object = None            # models.profile.HardwareProfile measured by `clustersim calibrate`

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise ValueError(f"nodes: must be >= 1, got {self.num_nodes}")
        if self.oversubscription < 1:
            raise ValueError(f"oversubscription: must be >= 1 (1 = full bisection), got {self.oversubscription}")
        if self.price_usd_per_gpu_hour is not None and self.price_usd_per_gpu_hour < 0:
            raise ValueError("price_usd_per_gpu_hour: must be >= 0")

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.node.gpus_per_node

    @property
    def gpus_per_node(self) -> int:
        return self.node.gpus_per_node

    @property
    def price_per_gpu_hour_usd(self) -> float:
        return self.gpu.price_usd_per_hour if self.price_usd_per_gpu_hour is None else self.price_usd_per_gpu_hour

    @property
    def net_bytes_per_s_per_gpu(self) -> float:
        """Achieved network bandwidth per GPU, one direction, after NIC efficiency and oversubscription."""
        return self.node.nic_bytes_per_s_per_gpu * self.node.nic_efficiency / self.oversubscription


def make_cluster(gpu: str | GpuSpec, num_nodes: int = 1, node: str | NodeSpec | None = None,
                 **overrides) -> Cluster:
    """A cluster of ``num_nodes`` nodes of ``gpu``; node preset defaults to the GPU's usual server.

    ``overrides`` may set Cluster fields (oversubscription, price_usd_per_gpu_hour, pue) and
    node fields (gpus_per_node, nic_bytes_per_s_per_gpu, ...).
    """
    g = get_gpu(gpu) if isinstance(gpu, str) else gpu
    n = node if isinstance(node, NodeSpec) else get_node(node or DEFAULT_NODE.get(g.name, "dgx-h100"))
    node_fields = {k: overrides.pop(k) for k in list(overrides) if k in NodeSpec.__dataclass_fields__}
    if node_fields:
        if "gpus_per_node" in node_fields and "nvlink_domain_gpus" not in node_fields:
            node_fields["nvlink_domain_gpus"] = node_fields["gpus_per_node"]
        n = dataclasses.replace(n, **node_fields)
    unknown = set(overrides) - set(Cluster.__dataclass_fields__)
    if unknown:
        raise ValueError(f"cluster: unknown field(s) {', '.join(sorted(unknown))}")
    return Cluster(gpu=g, num_nodes=num_nodes, node=n, **overrides)
