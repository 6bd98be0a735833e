//! Turns a conversation into the prompt text a chat model was trained on, by rendering the
//! model's own Jinja chat template (or a built-in ChatML / Llama 3 one) the way Hugging Face does.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use super::Tokenizer;

/// The template's name inside its environment; errors name the template by its origin instead.
const TEMPLATE: &str = "chat";

/// Begins the origin of the templates this module brings for models without one.
const BUILT_IN: &str = "built-in ";

/// Marks errors a template raised on purpose, so they are reported as its message alone.
const RAISED: &str = "raise_exception: ";

pub(crate) const CHATML: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}\
{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{origin}: `{key}` should be {expected}")]
    WrongType {
        origin: String,
        key: String,
        expected: String,
    },
    #[error("chat template from {origin} does not compile{}: {detail}", at_line(*.line))]
    Syntax {
        origin: String,
        line: Option<usize>,
        detail: String,
    },
    #[error("chat template from {origin} refused the conversation: {message}")]
    Raised { origin: String, message: String },
    #[error("chat template from {origin} failed to render{}: {detail}", at_line(*.line))]
    Render {
        origin: String,
        line: Option<usize>,
        detail: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

/// A compiled chat template with the BOS and EOS spellings it may refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file and key, or "built-in ChatML"), for errors.
    origin: String,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compiles `text`; `origin` says where it came from in error messages.
    pub fn from_source(
        origin: &str,
        text: &str,
        bos: &str,
        eos: &str,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        // Hugging Face renders chat templates with both options on; templates rely on them.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| syntax_error(origin, &e))?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE, text.to_owned())
            .map_err(|e| syntax_error(origin, &e))?;
        Ok(ChatTemplate {
            env,
            origin: origin.to_owned(),
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// ChatML (`<|im_start|>role ... <|im_end|>`), for models without a template of their own.
    pub fn chatml() -> ChatTemplate {
        ChatTemplate::built_in("ChatML", CHATML, "<|im_start|>", "<|im_end|>")
    }

    /// The Llama 3 header format, for models without a template of their own.
    pub fn llama3() -> ChatTemplate {
        ChatTemplate::built_in("Llama 3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>")
    }

    /// The built-in template that fits `tokenizer`'s special tokens: Llama 3 when it has
    /// `<|eot_id|>`, ChatML otherwise.
    pub fn built_in_for(tokenizer: &Tokenizer) -> ChatTemplate {
        if tokenizer.token_id("<|eot_id|>").is_some() {
            ChatTemplate::llama3()
        } else {
            ChatTemplate::chatml()
        }
    }

    /// True for the templates of this module, used when a model brings none of its own.
    pub fn is_built_in(&self) -> bool {
        self.origin.starts_with(BUILT_IN)
    }

    fn built_in(name: &str, text: &str, bos: &str, eos: &str) -> ChatTemplate {
        // The text is a constant of this module, and a unit test compiles it.
        ChatTemplate::from_source(&format!("{BUILT_IN}{name}"), text, bos, eos)
            .expect("built-in chat templates compile")
    }

    /// The template a GGUF file carries in `tokenizer.chat_template`, if any.
    pub fn from_gguf_metadata(
        metadata: &HashMap<String, Value>,
        source: &Path,
        tokenizer: &Tokenizer,
    ) -> Result<Option<ChatTemplate>, ChatError> {
        let key = "tokenizer.chat_template";
        let origin = format!("{} ({key})", source.display());
        match metadata.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => {
                let (bos, eos) = special_spellings(tokenizer);
                ChatTemplate::from_source(&origin, text, &bos, &eos).map(Some)
            }
            Some(_) => Err(ChatError::WrongType {
                origin,
                key: key.to_owned(),
                expected: "a string".to_owned(),
            }),
        }
    }

    /// The template of a Hugging Face model folder: `chat_template.jinja`, else the
    /// `chat_template` of `tokenizer_config.json` (a string, or a list whose `default` entry is used).
    pub fn from_hf_folder(
        folder: &Path,
        tokenizer: &Tokenizer,
    ) -> Result<Option<ChatTemplate>, ChatError> {
        let (bos, eos) = special_spellings(tokenizer);
        let jinja = folder.join("chat_template.jinja");
        if jinja.is_file() {
            let text = read(&jinja)?;
            return ChatTemplate::from_source(&jinja.display().to_string(), &text, &bos, &eos)
                .map(Some);
        }
        let config_path = folder.join("tokenizer_config.json");
        if !config_path.is_file() {
            return Ok(None);
        }
        let origin = format!("{} (chat_template)", config_path.display());
        let config: serde_json::Value =
            serde_json::from_str(&read(&config_path)?).map_err(|source| ChatError::Json {
                path: config_path.display().to_string(),
                source,
            })?;
        let text = match config.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(text)) => Some(text.as_str()),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(serde_json::Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(serde_json::Value::as_str),
            Some(_) => None,
        };
        let text = text.ok_or_else(|| ChatError::WrongType {
            origin: config_path.display().to_string(),
            key: "chat_template".to_owned(),
            expected: "a string or a list with a `default` template".to_owned(),
        })?;
        ChatTemplate::from_source(&origin, text, &bos, &eos).map(Some)
    }

    /// The prompt for `messages`; with `add_generation_prompt`, it ends where the assistant's
    /// reply begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE)
            .map_err(|e| syntax_error(&self.origin, &e))?;
        template
            .render(context! {
                messages => minijinja::value::Serde(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(|e| self.render_error(&e))
    }

    fn render_error(&self, e: &minijinja::Error) -> ChatError {
        let detail = e
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string());
        if let Some(message) = detail.strip_prefix(RAISED) {
            return ChatError::Raised {
                origin: self.origin.clone(),
                message: message.to_owned(),
            };
        }
        ChatError::Render {
            origin: self.origin.clone(),
            line: e.line(),
            detail: format!("{}: {detail}", e.kind()),
        }
    }
}

fn syntax_error(origin: &str, e: &minijinja::Error) -> ChatError {
    ChatError::Syntax {
        origin: origin.to_owned(),
        line: e.line(),
        detail: e
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| e.to_string()),
    }
}

/// Hugging Face templates call this to reject a conversation they cannot format.
fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

fn special_spellings(tokenizer: &Tokenizer) -> (String, String) {
    let spell = |id: Option<u32>| {
        id.and_then(|id| tokenizer.id_to_piece(id))
            .unwrap_or_default()
    };
    (spell(tokenizer.bos_id()), spell(tokenizer.eos_id()))
}

fn read(path: &Path) -> Result<String, ChatError> {
    std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokenizer::tiny_metadata;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "  What is GERD? "),
        ]
    }

    fn template(text: &str) -> ChatTemplate {
        ChatTemplate::from_source("test template", text, "<s>", "</s>").unwrap()
    }

    fn tiny_tokenizer() -> Tokenizer {
        Tokenizer::from_gguf_metadata(&tiny_metadata("smollm"), Path::new("t.gguf")).unwrap()
    }

    #[test]
    fn chatml_ends_with_the_assistant_header() {
        let prompt = ChatTemplate::chatml()
            .render(&conversation(), true)
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n\
             <|im_start|>user\n  What is GERD? <|im_end|>\n<|im_start|>assistant\n"
        );
        let without = ChatTemplate::chatml()
            .render(&conversation(), false)
            .unwrap();
        assert!(without.ends_with("<|im_end|>\n"), "{without}");
    }

    #[test]
    fn llama3_starts_with_bos_and_trims_content() {
        let prompt = ChatTemplate::llama3()
            .render(&conversation(), true)
            .unwrap();
        assert_eq!(
            prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat is GERD?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn built_in_follows_the_tokenizer() {
        let prompt = ChatTemplate::built_in_for(&tiny_tokenizer())
            .render(&conversation(), false)
            .unwrap();
        assert!(prompt.starts_with("<|im_start|>system"), "{prompt}");
    }

    #[test]
    fn blocks_trim_like_hugging_face() {
        let text = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}";
        assert_eq!(
            template(text).render(&conversation(), false).unwrap(),
            "[  What is GERD? ]\n"
        );
    }

    #[test]
    fn python_methods_tojson_and_special_token_variables_work() {
        let text = "{{ bos_token }}{{ messages[1].content.strip() }}|{{ messages[0] | tojson }}\
                    {% if add_generation_prompt %}{{ eos_token }}{% endif %}";
        assert_eq!(
            template(text).render(&conversation(), true).unwrap(),
            r#"<s>What is GERD?|{"role": "system", "content": "Be brief."}</s>"#
        );
    }

    #[test]
    fn syntax_error_names_template_and_line() {
        let err =
            ChatTemplate::from_source("tokenizer_config.json", "ok\n{% if %}", "", "").unwrap_err();
        assert!(
            matches!(err, ChatError::Syntax { line: Some(2), .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message
                .starts_with("chat template from tokenizer_config.json does not compile at line 2"),
            "{message}"
        );
    }

    #[test]
    fn raised_exception_is_reported_as_the_templates_message() {
        let text = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}";
        let err = template(text).render(&conversation(), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chat template from test template refused the conversation: Conversation must start with user"
        );
    }

    #[test]
    fn failing_render_names_template_and_line() {
        let err = template("line one\n{{ messages[0].content.no_such_method() }}")
            .render(&conversation(), false)
            .unwrap_err();
        assert!(
            matches!(err, ChatError::Render { line: Some(2), .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("test template failed to render at line 2"),
            "{err}"
        );
    }

    #[test]
    fn gguf_template_uses_the_files_special_tokens() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert(
            "tokenizer.chat_template".to_owned(),
            Value::String("{{ bos_token }}{{ messages[1].role }}{{ eos_token }}".to_owned()),
        );
        let tokenizer = tiny_tokenizer();
        let template = ChatTemplate::from_gguf_metadata(&metadata, Path::new("m.gguf"), &tokenizer)
            .unwrap()
            .unwrap();
        assert_eq!(
            template.render(&conversation(), false).unwrap(),
            "<|im_start|>user<|im_end|>"
        );
        let none = ChatTemplate::from_gguf_metadata(
            &tiny_metadata("smollm"),
            Path::new("m.gguf"),
            &tokenizer,
        );
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn hf_folder_prefers_the_jinja_file_then_the_default_named_template() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tiny_tokenizer();
        assert!(
            ChatTemplate::from_hf_folder(dir.path(), &tokenizer)
                .unwrap()
                .is_none()
        );
        let config = r#"{"chat_template": [{"name": "tool_use", "template": "tools"},
                                           {"name": "default", "template": "default"}]}"#;
        std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
        let render = || {
            ChatTemplate::from_hf_folder(dir.path(), &tokenizer)
                .unwrap()
                .unwrap()
                .render(&[], false)
                .unwrap()
        };
        assert_eq!(render(), "default");
        std::fs::write(dir.path().join("chat_template.jinja"), "from jinja").unwrap();
        assert_eq!(render(), "from jinja");
    }

    #[test]
    fn hf_config_with_a_bad_chat_template_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": 3}"#,
        )
        .unwrap();
        let err = ChatTemplate::from_hf_folder(dir.path(), &tiny_tokenizer()).unwrap_err();
        assert!(
            err.to_string()
                .contains("`chat_template` should be a string or a list"),
            "{err}"
        );
    }
}
