use crate::helpers::spawn_app;

#[tokio::test]
async fn classes_lists_the_47_food_labels_with_their_indices() {
    let app = spawn_app().await;
    let body = app.get_json("/classes").await;
    assert_eq!(body["count"], 47);
    let classes = body["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 47);
    let index_of = |label: &str| classes.iter().find(|c| c["label"] == label).map(|c| c["index"].as_i64().unwrap());
    assert_eq!(index_of("pizza"), Some(963));
    assert_eq!(index_of("espresso"), Some(967));
    assert_eq!(index_of("plate"), Some(923));
    assert_eq!(index_of("ear"), Some(998));
    assert_eq!(index_of("tabby"), None, "not a food class");
}
