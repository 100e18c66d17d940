//! What `#[throttled]` turns a function into.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType,
    Type, Visibility, parse_quote,
};

use crate::args::{Limit, Source};

/// Expands the outermost `#[throttled]`; it also takes the ones stacked below it.
pub(crate) fn throttled(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[throttled] goes on an `async fn`: an axum handler or a WebSocket message handler",
            );
            return error_with(error, item);
        }
    };

    let mut errors: Option<syn::Error> = None;
    let mut push = |error: syn::Error| match &mut errors {
        Some(errors) => errors.combine(error),
        None => errors = Some(error),
    };

    let mut limits = Vec::new();
    match syn::parse2::<Limit>(attr) {
        Ok(limit) => limits.push(limit),
        Err(error) => push(error),
    }
    let (stacked, others): (Vec<Attribute>, Vec<Attribute>) =
        func.attrs.drain(..).partition(is_throttled);
    func.attrs = others;
    for attr in &stacked {
        if let syn::Meta::Path(path) = &attr.meta {
            push(syn::Error::new_spanned(
                path,
                format!("#[throttled] needs a limit: {}", crate::args::USAGE),
            ));
            continue;
        }
        match attr.parse_args::<Limit>() {
            Ok(limit) => limits.push(limit),
            Err(error) => push(error),
        }
    }

    if func.sig.asyncness.is_none() {
        let fn_token = func.sig.fn_token;
        push(syn::Error::new(
            func.sig.constness.map_or(fn_token.span, |c| c.span),
            format!(
                "#[throttled] needs an `async fn`: axum handlers and WebSocket message handlers are async; write `async fn {}(...)`",
                func.sig.ident
            ),
        ));
    }
    if let Some(receiver) = func.sig.receiver() {
        push(syn::Error::new_spanned(
            receiver,
            "#[throttled] goes on free functions, not on methods",
        ));
    }
    if let Some(errors) = errors {
        return error_with(errors, func.into_token_stream());
    }

    if ws_params(&func).next().is_some() {
        match expand_ws(&mut func, &limits) {
            Ok(expanded) => expanded,
            Err(error) => error_with(error, func.into_token_stream()),
        }
    } else {
        expand_http(func, &limits)
    }
}

/// The errors, followed by the item (so that its uses do not pile up more errors).
fn error_with(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#error #item)
}

fn is_throttled(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "throttled")
}

/// `::traffik::axum::throttle!(...)` declaring `name` with a rate written in the attribute.
fn declaration(
    name: &Ident,
    vis: &Visibility,
    docs: TokenStream,
    uid: TokenStream,
    rate: &LitStr,
    limit: &Limit,
    ws: bool,
) -> TokenStream {
    let mut init = quote! {
        ::traffik::axum::HttpThrottle::new(#uid, ::traffik::axum::core::rate!(#rate))
    };
    if let Some(strategy) = &limit.strategy {
        init = quote!(#init.strategy(#strategy));
    }
    if let Some(identifier) = &limit.identifier {
        init = quote!(#init.identifier(#identifier));
    }
    if let Some(cost) = &limit.cost {
        init = if !ws && is_cost_fn(cost) {
            quote!(#init.cost(#cost))
        } else {
            quote!(#init.fixed_cost(#cost))
        };
    }
    if let Some(backend) = &limit.backend {
        init = quote!(#init.backend(#backend));
    }
    quote_spanned! {rate.span()=>
        ::traffik::axum::throttle!(#docs #vis #name = #init);
    }
}

/// A closure or a function's (snake_case) path computes the cost from the request; any
/// other expression (literal, constant, arithmetic) is a fixed cost.
fn is_cost_fn(cost: &Expr) -> bool {
    match cost {
        Expr::Closure(_) => true,
        Expr::Path(path) => path.path.segments.last().is_some_and(|segment| {
            segment
                .ident
                .unraw()
                .to_string()
                .starts_with(|c: char| c.is_lowercase() || c == '_')
        }),
        _ => false,
    }
}

/// The default uid: the function's module path and name, `#n` for the n-th stacked limit.
fn default_uid(func: &ItemFn, index: usize) -> TokenStream {
    let name = func.sig.ident.unraw().to_string();
    let suffix = if index == 0 {
        format!("::{name}")
    } else {
        format!("::{name}#{}", index + 1)
    };
    quote!(::core::concat!(::core::module_path!(), #suffix))
}

fn uid(func: &ItemFn, limit: &Limit, index: usize) -> TokenStream {
    limit
        .uid
        .as_ref()
        .map_or_else(|| default_uid(func, index), ToTokens::to_token_stream)
}

/// An HTTP handler: one hidden `Throttled<_>` argument per limit, first, so that the
/// limits are decided before any body is read.
fn expand_http(mut func: ItemFn, limits: &[Limit]) -> TokenStream {
    let mut declarations = TokenStream::new();
    let base = func.sig.ident.unraw();
    for (index, limit) in limits.iter().enumerate() {
        let ty = match &limit.source {
            Source::Rate(rate) => {
                let name = format_ident!("__traffik_{}_{}", base, index, span = rate.span());
                let docs = quote! { #[doc(hidden)] #[allow(non_camel_case_types)] };
                let uid = uid(&func, limit, index);
                declarations.extend(declaration(&name, &func.vis, docs, uid, rate, limit, false));
                name.into_token_stream()
            }
            Source::Named(path) => path.into_token_stream(),
        };
        let arg: FnArg =
            syn::parse_quote_spanned!(limit.span()=> _: ::traffik::axum::Throttled<#ty>);
        func.sig.inputs.insert(index, arg);
    }
    quote!(#declarations #func)
}

/// The parameters typed `&WsThrottle<_>` (or by value, to be refused).
fn ws_params(func: &ItemFn) -> impl Iterator<Item = (usize, &syn::PatType, bool, &Type)> {
    func.sig
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(position, arg)| match arg {
            FnArg::Typed(pat_type) => {
                let (by_ref, ty) = match &*pat_type.ty {
                    Type::Reference(reference) => (true, &*reference.elem),
                    other => (false, other),
                };
                generic_of(ty, "WsThrottle").map(|inner| (position, pat_type, by_ref, inner))
            }
            FnArg::Receiver(_) => None,
        })
}

/// `T` in a type `...::Wrapper<T>`.
fn generic_of<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

fn is_path_to(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == name))
}

/// The identifier a parameter binds, giving `_` one.
fn binding(func: &mut ItemFn, position: usize, fallback: &str) -> Result<Ident, syn::Error> {
    let Some(FnArg::Typed(pat_type)) = func.sig.inputs.iter_mut().nth(position) else {
        return Err(syn::Error::new(Span::call_site(), "parameter not found"));
    };
    match &*pat_type.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Ok(pat.ident.clone()),
        Pat::Wild(_) => {
            let ident = format_ident!("{}", fallback);
            *pat_type.pat = parse_quote!(#ident);
            Ok(ident)
        }
        other => Err(syn::Error::new_spanned(
            other,
            "#[throttled] needs to use this parameter: bind it to a name, as in `limit: &WsThrottle<ChatLimit>`",
        )),
    }
}

/// A WebSocket message handler: the limits are checked, in order, before the body runs.
fn expand_ws(func: &mut ItemFn, limits: &[Limit]) -> syn::Result<TokenStream> {
    let params: Vec<(usize, Type, bool, Type)> = ws_params(func)
        .map(|(position, pat_type, by_ref, inner)| {
            (position, (*pat_type.ty).clone(), by_ref, inner.clone())
        })
        .collect();
    if let Some((_, ty, _, _)) = params.iter().find(|(_, _, by_ref, _)| !by_ref) {
        let error = syn::Error::new_spanned(
            ty,
            "take the WsThrottle by reference, as in `limit: &WsThrottle<ChatLimit>`: it lives as long as the connection",
        );
        return Err(error);
    }
    if params.len() != limits.len() {
        let error = syn::Error::new(
            func.sig.ident.span(),
            format!(
                "this WebSocket message handler has {} #[throttled] limit(s) but {} `&WsThrottle<_>` parameter(s); it takes one `&WsThrottle<Name>` per #[throttled], in the same order",
                limits.len(),
                params.len()
            ),
        );
        return Err(error);
    }
    let socket = func.sig.inputs.iter().position(|arg| match arg {
        FnArg::Typed(pat_type) => match &*pat_type.ty {
            Type::Reference(reference) => {
                reference.mutability.is_some() && is_path_to(&reference.elem, "WebSocket")
            }
            _ => false,
        },
        FnArg::Receiver(_) => false,
    });
    let Some(socket) = socket else {
        let error = syn::Error::new_spanned(
            &params[0].1,
            "a throttled WebSocket message handler also takes the socket, as in `socket: &mut WebSocket`, to tell the client when a message is over the limit",
        );
        return Err(error);
    };
    let socket = binding(func, socket, "__traffik_socket")?;

    let mut declarations = TokenStream::new();
    let mut checks = TokenStream::new();
    let skip = match &func.sig.output {
        ReturnType::Default => quote!(return),
        ReturnType::Type(..) => quote!(return ::core::default::Default::default()),
    };
    for (index, (limit, (position, _, _, inner))) in limits.iter().zip(&params).enumerate() {
        match &limit.source {
            Source::Rate(rate) => {
                let name = match inner {
                    Type::Path(path) if path.qself.is_none() => path.path.get_ident(),
                    _ => None,
                };
                let Some(name) = name else {
                    let error = syn::Error::new_spanned(
                        inner,
                        "with a rate written in #[throttled], name the throttle this attribute declares with a plain name, as in `&WsThrottle<ChatLimit>`; for a throttle declared elsewhere, write #[throttled(path::ToIt)]",
                    );
                    return Err(error);
                };
                let doc = format!(
                    "The per-message limit of [`{}`], declared by `#[throttled({})]`.",
                    func.sig.ident.unraw(),
                    rate.token()
                );
                let docs = quote!(#[doc = #doc]);
                let uid = uid(func, limit, index);
                declarations.extend(declaration(name, &func.vis, docs, uid, rate, limit, true));
            }
            Source::Named(path) => {
                let written = inner.to_token_stream().to_string();
                if written != path.to_token_stream().to_string() {
                    let error = syn::Error::new_spanned(
                        inner,
                        format!(
                            "this handler is throttled by `{}`: take `&WsThrottle<{0}>`",
                            path.to_token_stream().to_string().replace(' ', "")
                        ),
                    );
                    return Err(error);
                }
            }
        }
        let fallback = format!("__traffik_limit_{index}");
        let limit_ident = binding(func, *position, &fallback)?;
        checks.extend(quote_spanned! {limit.span()=>
            match #limit_ident.check(&mut *#socket).await {
                ::core::result::Result::Ok(::traffik::axum::WsVerdict::Allowed) => {}
                _ => #skip,
            }
        });
    }
    let body = &func.block;
    let block = parse_quote!({ #checks #body });
    *func.block = block;
    Ok(quote!(#declarations #func))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// The expansion documented on `#[throttled]`: one declaration, one argument.
    #[test]
    fn one_attribute_expands_to_one_declaration_and_one_argument() {
        let expanded = super::throttled(
            quote!("5/m"),
            quote!(
                pub async fn limited(Path(id): Path<u32>) -> String {
                    id.to_string()
                }
            ),
        );
        let expected = quote! {
            ::traffik::axum::throttle!(
                #[doc(hidden)] #[allow(non_camel_case_types)]
                pub __traffik_limited_0 = ::traffik::axum::HttpThrottle::new(
                    ::core::concat!(::core::module_path!(), "::limited"),
                    ::traffik::axum::core::rate!("5/m")
                )
            );
            pub async fn limited(
                _: ::traffik::axum::Throttled<__traffik_limited_0>,
                Path(id): Path<u32>
            ) -> String { id.to_string() }
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }

    #[test]
    fn a_websocket_message_handler_checks_before_its_body() {
        let expanded = super::throttled(
            quote!("3/10s", uid = "chat"),
            quote!(
                async fn on_message(socket: &mut WebSocket, limit: &WsThrottle<Chat>, m: Message) {
                    body(m)
                }
            ),
        );
        let expected = quote! {
            ::traffik::axum::throttle!(
                #[doc = "The per-message limit of [`on_message`], declared by `#[throttled(\"3/10s\")]`."]
                Chat = ::traffik::axum::HttpThrottle::new("chat", ::traffik::axum::core::rate!("3/10s"))
            );
            async fn on_message(socket: &mut WebSocket, limit: &WsThrottle<Chat>, m: Message) {
                match limit.check(&mut *socket).await {
                    ::core::result::Result::Ok(::traffik::axum::WsVerdict::Allowed) => {}
                    _ => return,
                }
                { body(m) }
            }
        };
        assert_eq!(expanded.to_string(), expected.to_string());
    }

    #[test]
    fn errors_keep_the_function_so_that_its_uses_still_resolve() {
        let expanded = super::throttled(
            quote!("5/mins"),
            quote!(
                async fn limited() {}
            ),
        );
        let text = expanded.to_string();
        assert!(text.contains("compile_error"), "{text}");
        assert!(text.contains("did you mean"), "{text}");
        assert!(text.ends_with("async fn limited () { }"), "{text}");
    }
}
