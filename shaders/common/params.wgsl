// Parameters and bindings shared by every row kernel (mirrored by `RowParams` in src/kernels.rs).
//
// Every buffer is bound at an offset aligned to `min_storage_buffer_offset_alignment`;
// the `*_base` fields are the element index, within that binding, where this dispatch's
// first row starts. So any row chunk (and any caller sub-range) is addressable while
// every index stays a u32 inside one binding.

struct RowParams {
    rows: u32,          // rows in this dispatch
    cols: u32,
    row_offset: u32,    // global index of this dispatch's first row (error reports)
    flags: u32,         // FLAG_* bits below
    a_base: u32,
    b_base: u32,
    label_base: u32,    // in labels of their type (FLAG_LABELS_*)
    out_base: u32,
    aux_base: u32,      // in u32 words; AUX_WORDS a row
    ignore_index: i32,
    inv_temperature: f32,
    temperature: f32,
    smoothing: f32,
    alpha: f32,         // distillation: α; jsd: β
    out_scale: f32,     // 1 for nats, 1/ln 2 for bits
    grad_base: u32,     // gradient output (common/grad.wgsl)
    grad_scale: f32,
    grad_denominator: f32,
    parts: u32,         // split rows (common/row_reduce.wgsl): parts per row
    part_cols: u32,     // and columns per part (even)
    z_loss: f32,        // cross-entropy: λ of λ·lse² (0: none)
    softcap: f32,       // c of c·tanh(x/c) on the inputs CAP_A / CAP_B name (common/load_each.wgsl)
    pad1: u32,
    pad2: u32,
}

const FLAG_IGNORE: u32 = 1u;        // ignore_index is set
const FLAG_WEIGHTS: u32 = 2u;       // class weights are bound
const FLAG_P_LOGITS: u32 = 4u;      // input a holds logits (else probabilities)
const FLAG_Q_LOGITS: u32 = 8u;      // input b holds logits (else probabilities)
const FLAG_LOG: u32 = 16u;          // softmax: write log-softmax
const FLAG_TERM_PLOGP: u32 = 32u;   // divergence: add  Σ p log p
const FLAG_TERM_PLOGQ: u32 = 64u;   // divergence: add −Σ p log q
const FLAG_NEGATE: u32 = 128u;      // divergence: negate the result (entropy)
const FLAG_HAS_B: u32 = 256u;       // divergence: input b is bound
const FLAG_LABELS_I64: u32 = 512u;  // labels are i64 (two words, low first); neither: i32
const FLAG_LABELS_U8: u32 = 1024u;  // labels are u8 (four to a word)

// status[0]: first row with a label outside [0, cols); status[1]: first row with a
// value outside its domain (negative, NaN or +inf probability, target outside [0, 1]).
const NO_ROW: u32 = 0xffffffffu;

// The per-row auxiliary record in out_aux: the argmax, the bits of the row's weight in the
// mean (w_y), the bits of its z-loss term (cross-entropy), the bits of its entropy
// (cross-entropy with ENTROPY); with REPORT, the label's rank, the bits of the top-1
// confidence and of the row's Brier term, and the label.
const AUX_WORDS: u32 = 8u;

// Cross-entropy with labels: each row's evaluation report (the label's rank among the
// classes, the top-1 confidence, Σ_j (p_j − [j = y])²) into words 4-7 of its aux record,
// from the loss's own pass. A pipeline constant, so that a kernel without it carries none.
override REPORT: bool = false;

// Cross-entropy: each row's entropy of softmax(logits) into word 3 of its aux record, from
// the loss's own pass. A pipeline constant, so that a kernel without it carries none of it.
override ENTROPY: bool = false;

// With ENTROPY, the z word of an ignored row: −0.0, a zero term whose sign bit tells the
// entropy's sum over rows (shaders/reduce.wgsl) to leave the row out.
const AUX_IGNORED: u32 = 0x80000000u;

@group(0) @binding(0) var<uniform> params: RowParams;
@group(0) @binding(3) var<storage, read> labels: array<i32>;    // read through label_of
@group(0) @binding(4) var<storage, read> class_weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_rows: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_aux: array<u32>;
@group(0) @binding(7) var<storage, read_write> status: array<atomic<u32>, 2>;

fn has_flag(f: u32) -> bool {
    return (params.flags & f) != 0u;
}

// The label of `row` of this dispatch, read as its type: i32; i64, whose low word is the
// label when the high word is its sign extension, and otherwise i32's minimum (never a
// class, nor an accepted ignore index: the row reports an out-of-range label); u8, byte
// i of the packed words. `i` counts labels of their type from the binding's start.
fn label_of(row: u32) -> i32 {
    let i = params.label_base + row;
    if has_flag(FLAG_LABELS_I64) {
        let lo = labels[2u * i];
        let hi = labels[2u * i + 1u];
        if hi != (lo >> 31u) {
            return bitcast<i32>(0x80000000u);
        }
        return lo;
    }
    if has_flag(FLAG_LABELS_U8) {
        let word = bitcast<u32>(labels[i / 4u]);
        return i32((word >> (8u * (i % 4u))) & 0xffu);
    }
    return labels[i];
}
