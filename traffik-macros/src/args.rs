//! The arguments of one `#[throttled(...)]`.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Path, Token};

use crate::rate;

/// Where the limit comes from.
pub(crate) enum Source {
    /// A rate written in the attribute, already checked.
    Rate(LitStr),
    /// A throttle declared with `throttle!`.
    Named(Path),
}

/// One `#[throttled(...)]`.
pub(crate) struct Limit {
    pub source: Source,
    pub uid: Option<LitStr>,
    pub strategy: Option<Expr>,
    pub identifier: Option<Expr>,
    pub cost: Option<Expr>,
    pub backend: Option<Expr>,
}

const OPTIONS: &str = "`uid = \"...\"`, `strategy = <expr>`, `identifier = <path>`, `cost = <expr>` or `backend = <expr>`";
pub(crate) const USAGE: &str = "write a rate, as in #[throttled(\"5/m\")], or the name of a throttle declared with throttle!, as in #[throttled(ApiLimit)]";

impl Parse for Limit {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(format!("#[throttled] needs a limit: {USAGE}")));
        }
        let source = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            if let Err(problem) = rate::parse(&lit.value()) {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("invalid rate {:?}: {problem}", lit.value()),
                ));
            }
            Source::Rate(lit)
        } else if input.peek(Ident) && input.peek2(Token![=]) {
            return Err(input.error(format!(
                "#[throttled] needs a limit before its options: {USAGE}"
            )));
        } else if input.peek(syn::Lit) {
            let lit: syn::Lit = input.parse()?;
            return Err(syn::Error::new(
                lit.span(),
                "the rate must be a string literal, as in #[throttled(\"5/m\")]",
            ));
        } else {
            let path = input
                .parse::<Path>()
                .map_err(|error| syn::Error::new(error.span(), USAGE))?;
            Source::Named(path)
        };

        let mut limit = Limit {
            source,
            uid: None,
            strategy: None,
            identifier: None,
            cost: None,
            backend: None,
        };
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let name: Ident = input.parse().map_err(|error| {
                syn::Error::new(error.span(), format!("expected an option: {OPTIONS}"))
            })?;
            if let Source::Named(path) = &limit.source {
                let path = quote::ToTokens::to_token_stream(path)
                    .to_string()
                    .replace(' ', "");
                return Err(syn::Error::new(
                    name.span(),
                    format!(
                        "`{path}` is a declared throttle: set `{name}` where it is declared (throttle!), or write a rate here instead, as in #[throttled(\"5/m\", {name} = ...)]"
                    ),
                ));
            }
            input.parse::<Token![=]>().map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!("expected `=` after `{name}`, as in `{name} = ...`"),
                )
            })?;
            let slot = match name.to_string().as_str() {
                "uid" => {
                    let uid: LitStr = input.parse().map_err(|error| {
                        syn::Error::new(
                            error.span(),
                            "the uid must be a string literal, as in uid = \"login\"",
                        )
                    })?;
                    if uid.value().is_empty() {
                        return Err(syn::Error::new(uid.span(), "the uid must not be empty"));
                    }
                    if limit.uid.replace(uid).is_some() {
                        return Err(duplicate(&name));
                    }
                    continue;
                }
                "strategy" => &mut limit.strategy,
                "identifier" => &mut limit.identifier,
                "cost" => &mut limit.cost,
                "backend" => &mut limit.backend,
                other => {
                    return Err(syn::Error::new(
                        name.span(),
                        format!("unknown option `{other}`; expected {OPTIONS}"),
                    ));
                }
            };
            let value: Expr = input.parse()?;
            if slot.replace(value).is_some() {
                return Err(duplicate(&name));
            }
        }
        Ok(limit)
    }
}

fn duplicate(name: &Ident) -> syn::Error {
    syn::Error::new(name.span(), format!("`{name}` is given twice; keep one"))
}

impl Limit {
    /// Where errors about this limit as a whole point.
    pub(crate) fn span(&self) -> Span {
        match &self.source {
            Source::Rate(lit) => lit.span(),
            Source::Named(path) => path.span(),
        }
    }
}
