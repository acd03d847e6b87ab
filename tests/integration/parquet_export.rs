//! Parquet export read back with the arrow reader, row by row.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow_array::{
    Array, BinaryArray, ListArray, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::harness::{self, cli_yaml, diff, oracle, sqlite_fixture};

fn yaml(dest: &str) -> String {
    format!(
        "source_type: sqlite\nsource_config: {{connection_string: 'sqlite:///checkpoints.db'}}\ndestination_type: parquet\ndestination_config: {dest}\n"
    )
}

pub fn read(path: &Path) -> (Vec<RecordBatch>, BTreeMap<String, String>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (batches, kv)
}

pub fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} type"))
}

#[tokio::test]
async fn every_row_reads_back_equal_to_the_source_and_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_fixture(dir.path());
    let run = cli_yaml(
        dir.path(),
        &yaml(
            "{output_path: out/cp.parquet, compression: zstd, row_group_bytes: 1000000}\nbatch_size: 20",
        ),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!dir.path().join("out/cp.parquet.partial").exists());

    let (batches, kv) = read(&dir.path().join("out/cp.parquet"));
    assert_eq!(kv["ckpt_migrate.source"], "sqlite");
    assert_eq!(kv["ckpt_migrate.version"], env!("CARGO_PKG_VERSION"));
    assert!(!kv["ckpt_migrate.run_id"].is_empty());

    let builder = ParquetRecordBatchReaderBuilder::try_new(
        File::open(dir.path().join("out/cp.parquet")).unwrap(),
    )
    .unwrap();
    assert!(
        builder.metadata().num_row_groups() > 1,
        "row groups are cut by bytes"
    );
    // Documents and ids never repeat: no dictionary for them (it only cost memory
    // and time); thread ids and pending writes repeat and keep theirs.
    for group in builder.metadata().row_groups() {
        for column in group.columns() {
            let path = column.column_path().string();
            let dictionary = column.dictionary_page_offset().is_some();
            match path.as_str() {
                "checkpoint_id" | "checkpoint_json" | "checkpoint_raw" | "origin" => {
                    assert!(!dictionary, "{path} is written with a dictionary")
                }
                "thread_id" | "metadata_json" | "pending_writes_json" => {
                    assert!(dictionary, "{path} is written without a dictionary")
                }
                _ => {}
            }
        }
    }

    let source: BTreeMap<_, _> = harness::read_sqlite(&db, 1000)
        .await
        .into_iter()
        .map(|r| (harness::record_key(&r), r))
        .collect();
    let expected = oracle("sqlite");
    let mut rows = 0;
    for batch in &batches {
        let s = |name| col::<StringArray>(batch, name);
        let ts = col::<TimestampMicrosecondArray>(batch, "ts");
        let writes = col::<ListArray>(batch, "pending_writes");
        for i in 0..batch.num_rows() {
            let key = (
                s("thread_id").value(i).to_owned(),
                s("checkpoint_ns").value(i).to_owned(),
                s("checkpoint_id").value(i).to_owned(),
            );
            let record = &source[&key];
            let view = record.view.as_ref().unwrap();
            let oracle_line = &expected[&key];
            let parse = |name| serde_json::from_str::<serde_json::Value>(s(name).value(i)).unwrap();
            let mut diffs = Vec::new();
            diff(
                &parse("checkpoint_json"),
                &oracle_line["checkpoint"],
                "checkpoint",
                &mut diffs,
                5,
            );
            diff(
                &parse("metadata_json"),
                &oracle_line["metadata"],
                "metadata",
                &mut diffs,
                5,
            );
            diff(
                &parse("pending_writes_json"),
                &oracle_line["pending_writes"],
                "pending_writes",
                &mut diffs,
                5,
            );
            assert!(diffs.is_empty(), "{key:?}: {diffs:?}");
            assert_eq!(
                s("parent_checkpoint_id").is_null(i),
                record.parent_checkpoint_id.is_none()
            );
            assert_eq!(ts.value(i), view.ts_parsed.unwrap().timestamp_micros());
            assert_eq!(s("ts_raw").value(i), view.ts.as_deref().unwrap());
            assert_eq!(
                col::<BinaryArray>(batch, "checkpoint_raw").value(i),
                record.checkpoint.bytes.as_slice()
            );
            assert_eq!(
                col::<BinaryArray>(batch, "metadata_raw").value(i),
                record.metadata.bytes.as_slice()
            );
            assert_eq!(s("checkpoint_type").value(i), "msgpack");
            let row_writes = writes.value(i);
            let row_writes = row_writes.as_any().downcast_ref::<StructArray>().unwrap();
            assert_eq!(row_writes.len(), record.pending_writes.len());
            let data = row_writes
                .column_by_name("data")
                .unwrap()
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap();
            let tags = row_writes
                .column_by_name("type")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for (j, w) in record.pending_writes.iter().enumerate() {
                assert_eq!(data.value(j), w.value.bytes.as_slice());
                assert_eq!(tags.value(j), w.value.type_tag);
            }
            rows += 1;
        }
    }
    assert_eq!(rows, 271);
    println!("Parquet export: {rows}/271 rows checked");
}

#[test]
fn every_compression_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    for codec in ["snappy", "zstd", "gzip", "lz4", "none"] {
        let run = cli_yaml(
            dir.path(),
            &yaml(&format!(
                "{{output_path: {codec}.parquet, compression: {codec}}}"
            )),
            &[],
        );
        assert_eq!(run.code(), 0, "{codec}: {}", run.stderr());
        let (batches, _) = read(&dir.path().join(format!("{codec}.parquet")));
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            271,
            "{codec}"
        );
    }
}

#[test]
fn partitions_are_hive_directories_without_the_partition_column() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_fixture(dir.path());
    let run = cli_yaml(
        dir.path(),
        &yaml("{output_path: ds, partition_by: [thread_id, date]}"),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let mut total = 0;
    let mut partitions = 0;
    for thread_dir in std::fs::read_dir(dir.path().join("ds")).unwrap() {
        let thread_dir = thread_dir.unwrap().path();
        let name = thread_dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("thread_id="), "{name}");
        for date_dir in std::fs::read_dir(&thread_dir).unwrap() {
            let date_dir = date_dir.unwrap().path();
            let date = date_dir.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(date.starts_with("date=20"), "{date}");
            let (batches, _) = read(&date_dir.join("part-00000.parquet"));
            for b in &batches {
                assert!(b.column_by_name("thread_id").is_none());
                assert!(b.column_by_name("checkpoint_id").is_some());
                total += b.num_rows();
            }
            partitions += 1;
        }
    }
    assert_eq!(total, 271);
    assert!(partitions >= 10);
}
