//! Counts → TF-IDF (count × idf) → L2-normalised sparse rows.

/// Writes the L2-normalised TF-IDF values of one document's `(feature, count)` pairs into
/// `values` (same order). A document whose weights are all zero keeps zeros (no NaN).
///
/// Arithmetic mirrors the reference (`_fast_tfidf_from_bow`, numba): the product
/// `count * idf` is formed in f64 and stored as f32, the squared norm is accumulated in f64
/// from the unrounded products, and each stored f32 is divided by the f64 norm.
pub fn apply_idf(features: &[(u32, u32)], idf: &[f32], values: &mut [f32]) {
    debug_assert_eq!(features.len(), values.len());
    let mut norm_sq = 0.0f64;
    for (&(idx, count), value) in features.iter().zip(values.iter_mut()) {
        let weighted = f64::from(count) * f64::from(idf[idx as usize]);
        *value = weighted as f32;
        norm_sq += weighted * weighted;
    }
    if norm_sq > 0.0 {
        let norm = norm_sq.sqrt();
        for value in values.iter_mut() {
            *value = (f64::from(*value) / norm) as f32;
        }
    }
}

/// Pseudo-IDF of the reference (`initialize_embedder_from_ngram_summary`):
/// `ln(sum(counts)) - ln(count)`, "inverse log-scaled term frequency".
pub fn idf_from_counts(counts: &[u64]) -> Vec<f32> {
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    let log_total = total.ln();
    counts
        .iter()
        .map(|&c| (log_total - (c as f64).ln()) as f32)
        .collect()
}

/// Document-frequency IDF: `ln(n_docs / df)`.
pub fn idf_from_document_frequencies(doc_freqs: &[u64], n_docs: u64) -> Vec<f32> {
    let log_n = (n_docs as f64).ln();
    doc_freqs
        .iter()
        .map(|&df| (log_n - (df.max(1) as f64).ln()) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_documents_by_hand() {
        let idf = [1.0f32, 2.0, 0.5];
        // doc A: feature 0 x3, feature 1 x1 -> weights (3, 2), norm sqrt(13)
        let a = [(0u32, 3u32), (1, 1)];
        let mut va = [0.0f32; 2];
        apply_idf(&a, &idf, &mut va);
        let n = 13f32.sqrt();
        assert!((va[0] - 3.0 / n).abs() < 1e-7 && (va[1] - 2.0 / n).abs() < 1e-7);
        // doc B: feature 2 x4 -> weight 2, normalised to exactly 1
        let mut vb = [0.0f32; 1];
        apply_idf(&[(2, 4)], &idf, &mut vb);
        assert_eq!(vb, [1.0]);
    }

    #[test]
    fn zero_idf_gives_zero_row_not_nan() {
        let mut v = [7.0f32; 2];
        apply_idf(&[(0, 2), (1, 1)], &[0.0, 0.0], &mut v);
        assert_eq!(v, [0.0, 0.0]);
    }

    #[test]
    fn pseudo_idf_by_hand() {
        // total 10: ln(10/1), ln(10/9)
        let idf = idf_from_counts(&[1, 9]);
        assert!((idf[0] - 10f32.ln()).abs() < 1e-6);
        assert!((idf[1] - (10f32 / 9.0).ln()).abs() < 1e-6);
        let df = idf_from_document_frequencies(&[4, 1], 4);
        assert_eq!(df[0], 0.0);
        assert!((df[1] - 4f32.ln()).abs() < 1e-6);
    }
}
