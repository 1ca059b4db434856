use xent::*;
fn main() -> Result<()> {
    let ctx = Context::new_blocking()?;
    println!("{}", ctx.adapter_label());
    for &(rows, cols) in &[(1usize, 1usize), (7, 3), (70000, 33), (5, 4097)] {
        let data: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
        let b = Batch::new(&data[..], rows, cols)?;
        let out =
            ctx.compute(&Loss::LogSumExp { logits: b }, &RunOptions { keep_values: true, ..Default::default() })?;
        let mut worst = 0f64;
        let mut sum = 0f64;
        for r in 0..rows {
            let row = &data[r * cols..(r + 1) * cols];
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let l = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            sum += l;
            worst = worst.max((l - out.values.as_ref().unwrap()[r] as f64).abs());
        }
        println!("{rows}x{cols}: worst {worst:e} sum gpu {} ref {}", out.sum, sum);
    }
    Ok(())
}
